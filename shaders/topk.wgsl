// topk.wgsl — the KK best logits (value, index), best first, so that a sampling decode step reads
// back KK pairs instead of the vocabulary. `part`: each workgroup keeps a running top KK of its
// CHUNK logits, sorting 1024 slots at a time (the current top KK plus the next 1024 - KK inputs)
// with a bitonic network; `final`: one workgroup does the same over the NPART * KK candidates and
// writes KK (index, value bits) pairs to OUT. Ties go to the lower index.
// Constants: NV (vocabulary), CHUNK, NPART, KK (< 512).
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
#ifdef PASS_PART
@group(0) @binding(1) var<storage, read> L: array<f32>;
@group(0) @binding(2) var<storage, read_write> CAND: array<vec2<u32>>;
#else
@group(0) @binding(1) var<storage, read> CAND: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> OUT: array<vec2<u32>>;
#endif

const WG: u32 = 256u;
const S: u32 = 1024u;
const NEG: f32 = -3.0e38;
var<workgroup> sv: array<f32, S>;
var<workgroup> si: array<u32, S>;

fn better(v: f32, i: u32, w: f32, j: u32) -> bool { return v > w || (v == w && i < j); }

// Sorts the S slots best first.
fn bitonic(li: u32) {
  for (var k = 2u; k <= S; k <<= 1u) {
    for (var j = k >> 1u; j > 0u; j >>= 1u) {
      workgroupBarrier();
      for (var p = li; p < S / 2u; p += WG) {
        let a = 2u * j * (p / j) + p % j;
        let b = a + j;
        let desc = (a & k) == 0u;
        if (better(sv[b], si[b], sv[a], si[a]) == desc) {
          let tv = sv[a];
          let ti = si[a];
          sv[a] = sv[b];
          si[a] = si[b];
          sv[b] = tv;
          si[b] = ti;
        }
      }
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
#ifdef PASS_PART
  let start = wid.x * CHUNK;
  let end = min(start + CHUNK, NV);
#else
  let start = 0u;
  let end = NPART * KK;
#endif
  for (var i = li; i < KK; i += WG) {
    sv[i] = NEG;
    si[i] = 0xffffffffu;
  }
  for (var base = start; base < end; base += S - KK) {
    for (var i = KK + li; i < S; i += WG) {
      let e = base + i - KK;
      var v = NEG;
      var x = 0xffffffffu;
      if (e < end) {
#ifdef PASS_PART
        v = L[e];
        x = e;
#else
        let c = CAND[e];
        v = bitcast<f32>(c.x);
        x = c.y;
#endif
      }
      sv[i] = v;
      si[i] = x;
    }
    bitonic(li);
  }
  for (var i = li; i < KK; i += WG) {
#ifdef PASS_PART
    CAND[wid.x * KK + i] = vec2<u32>(bitcast<u32>(sv[i]), si[i]);
#else
    OUT[i] = vec2<u32>(si[i], bitcast<u32>(sv[i]));
#endif
  }
}
