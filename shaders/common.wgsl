// common.wgsl — prelude included first by every shader: the arithmetic precision of this
// pipeline (AT: f16 when the adapter has shader-f16 and the plan asks for it, else f32) and the
// per-step parameters the executor writes before each submit.
#ifdef SUBGROUPS
enable subgroups;
#endif
#ifdef F16
enable f16;
alias AT = f16;
#else
alias AT = f32;
#endif

// Written by the host once per step: tokens in this step, position of the first one, and keys
// visible to the last one (pos0 + n_tokens).
struct Params {
  n_tokens: u32,
  pos0: u32,
  n_kv: u32,
  pad: u32,
}

fn silu(g: f32) -> f32 { return g / (1.0 + exp(-g)); }

// sin/cos of large angles (position x frequency reaches 10^4 radians and more): reduce to
// [-pi, pi] first with a two-part 2*pi so the result does not depend on the GPU's own reduction.
// k * 6.28125 is exact in f32 for k < 2^15.
fn reduce_angle(a: f32) -> f32 {
  let k = round(a * 0.15915494309189535);
  return (a - k * 6.28125) - k * 0.0019353071795864769;
}
