// embed.wgsl — Y[t] = row TOK[t] of the embedding matrix, dequantized (dequant.wgsl). A matrix
// split over several bindings is looked up by one dispatch per part: each writes only the tokens
// whose id falls in its rows [ROW0, ROW0 + NROWS).
// Constants: K (row width), ROWBYTES, ROW0, NROWS, YSTRIDE (floats).
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> TOK: array<u32>;
@group(0) @binding(3) var<storage, read_write> Y: array<vec4<f32>>;

#include "dequant.wgsl"

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let q = gid.x;
  let t = gid.y;
  if (q >= K / GS || t >= P.n_tokens) { return; }
  let id = TOK[t];
  if (id < ROW0 || id >= ROW0 + NROWS) { return; }
  let w = dqg((id - ROW0) * ROWBYTES, q);
  for (var i = 0u; i < GS / 4u; i++) {
    Y[t * (YSTRIDE / 4u) + q * (GS / 4u) + i] = vec4<f32>(w[i]);
  }
}
