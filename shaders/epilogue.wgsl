// epilogue.wgsl — where a matrix product's results go, shared by matvec.wgsl (decode) and
// matmul.wgsl (prefill). A dispatch computes N logical rows starting at ROW0; logical rows map to
// physical output rows so that the pairs an epilogue combines are adjacent:
//   EPI_QKV    rows of q|k|v (one weight buffer); under ROPE_NEOX the rotation partners
//              (i, i + HD/2) of each head become logical rows (2i, 2i + 1). Adds the bias, rotates
//              q and k at position pos0 + t, writes q to Y and k, v into the layer's cache rows.
//   EPI_SWIGLU rows of gate|up interleaved: logical 2i = gate row i, 2i + 1 = up row i; writes
//              silu(gate) * up.
//   EPI_ADD    Y += result (the residual stream).
//   otherwise  Y = result (+ bias).
// Needs: VEC (array<vec4<f32>>), Y, and for EPI_QKV the caches KC, VC; constants N, ROW0, WROW0,
// YSTRIDE, Y_OFF, YROW0 (Y's first row when a dispatch writes a row range of a bigger product to
// its own buffer), and BIAS_OFF (BIAS), HD, QD, KD, NCTX, FREQ_OFF (EPI_QKV), NFF (EPI_SWIGLU).

fn vecf(i: u32) -> f32 { return VEC[i >> 2u][i & 3u]; }

fn phys(lg: u32) -> u32 {
#ifdef EPI_SWIGLU
  return (lg & 1u) * NFF + (lg >> 1u);
#else
#ifdef ROPE_NEOX
  if (lg < QD + KD) {
    let w = lg % HD;
    return lg - w + (w >> 1u) + (w & 1u) * (HD / 2u);
  }
#endif
  return lg;
#endif
}

// Byte offset of the weight row behind logical row lg, within the W binding.
fn wrow_byte(lg: u32) -> u32 { return (phys(lg) - WROW0) * ROWBYTES; }

fn biased(ph: u32, v: f32) -> f32 {
#ifdef BIAS
  return v + vecf(BIAS_OFF + ph);
#else
  return v;
#endif
}

// v: the result of logical row lg for token t; pv: that of its partner lg ^ 1.
fn emit(lg: u32, t: u32, v0: f32, pv0: f32) {
  let ph = phys(lg);
  var v = biased(ph, v0);
#ifdef EPI_QKV
  let pos = P.pos0 + t;
  if (lg < QD + KD) {
    let pv = biased(phys(lg ^ 1u), pv0);
    let a = reduce_angle(f32(pos) * vecf(FREQ_OFF + ((lg % HD) >> 1u)));
    let c = cos(a);
    let s = sin(a);
    if ((lg & 1u) == 0u) { v = v * c - pv * s; } else { v = pv * s + v * c; }
  }
  if (ph < QD) {
    Y[Y_OFF + t * YSTRIDE + ph] = v;
  } else if (ph < QD + KD) {
    let r = ph - QD;
    KC[((r / HD) * NCTX + pos) * HD + r % HD] = v;
  } else {
    let r = ph - QD - KD;
    VC[((r / HD) * NCTX + pos) * HD + r % HD] = v;
  }
#else
#ifdef EPI_SWIGLU
  if ((lg & 1u) == 0u) {
    Y[Y_OFF + t * YSTRIDE + (lg >> 1u)] = silu(v) * biased(phys(lg ^ 1u), pv0);
  }
#else
#ifdef EPI_ADD
  Y[Y_OFF + t * YSTRIDE + ph - YROW0] += v;
#else
  Y[Y_OFF + t * YSTRIDE + ph - YROW0] = v;
#endif
#endif
#endif
}
