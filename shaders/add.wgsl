// add.wgsl — Y[t] += A[t], N floats per row (rows YSTRIDE / ASTRIDE apart): the residual add
// when it is not fused into the matrix product before it.
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let t = gid.y;
  if (i >= N || t >= P.n_tokens) { return; }
  Y[t * YSTRIDE + i] += A[t * ASTRIDE + i];
}
