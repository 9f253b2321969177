// kv_store.wgsl — copies the step's k and v rows into the layer's cache at positions pos0 + t.
// Cache layout per layer: [NKVH][NCTX][HD], so one head's history is contiguous for attention.
// Constants: KD (= NKVH * HD), HD, NCTX, STRIDE (floats per token row of k and v).
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> KS: array<f32>;
@group(0) @binding(2) var<storage, read> VS: array<f32>;
@group(0) @binding(3) var<storage, read_write> KC: array<f32>;
@group(0) @binding(4) var<storage, read_write> VC: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let t = gid.y;
  if (i >= KD || t >= P.n_tokens) { return; }
  let dst = ((i / HD) * NCTX + P.pos0 + t) * HD + i % HD;
  KC[dst] = KS[t * STRIDE + i];
  VC[dst] = VS[t * STRIDE + i];
}
