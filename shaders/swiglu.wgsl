// swiglu.wgsl — G[t] = silu(G[t]) * U[t] in place, N floats per row (rows STRIDE apart).
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> U: array<f32>;
@group(0) @binding(2) var<storage, read_write> G: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let t = gid.y;
  if (i >= N || t >= P.n_tokens) { return; }
  let j = t * STRIDE + i;
  G[j] = silu(G[j]) * U[j];
}
