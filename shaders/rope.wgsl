// rope.wgsl — rotary position embedding in place on NH heads of HD per token row, at position
// pos0 + t. ROPE_NEOX rotates pairs (i, i + HD/2) (qwen2), otherwise (2i, 2i + 1) (llama);
// angle = position * VEC[FREQ_OFF + i] (the frequency table is computed by the plan's author).
// Constants: NH, HD, STRIDE (floats per token row), FREQ_OFF.
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> VEC: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

fn vecf(i: u32) -> f32 { return VEC[i >> 2u][i & 3u]; }

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let half = HD / 2u;
  let pr = gid.x; // pair index over all heads
  let t = gid.y;
  if (pr >= NH * half || t >= P.n_tokens) { return; }
  let h = pr / half;
  let i = pr % half;
  let base = t * STRIDE + h * HD;
#ifdef ROPE_NEOX
  let i0 = base + i;
  let i1 = base + i + half;
#else
  let i0 = base + 2u * i;
  let i1 = i0 + 1u;
#endif
  let a = reduce_angle(f32(P.pos0 + t) * vecf(FREQ_OFF + i));
  let c = cos(a);
  let s = sin(a);
  let x0 = Y[i0];
  let x1 = Y[i1];
  Y[i0] = x0 * c - x1 * s;
  Y[i1] = x0 * s + x1 * c;
}
