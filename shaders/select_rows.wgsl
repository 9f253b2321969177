// select_rows.wgsl — copies the rows whose logits are wanted into the output head's input:
// the step's last row into row 0 (X_LAST), or every row.
// Constants: K (floats per row), XSTRIDE, YSTRIDE.
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  var src = gid.y;
  var dst = gid.y;
#ifdef X_LAST
  src = P.n_tokens - 1u;
  dst = 0u;
#endif
  if (i >= K || src >= P.n_tokens) { return; }
  Y[dst * YSTRIDE + i] = X[src * XSTRIDE + i];
}
