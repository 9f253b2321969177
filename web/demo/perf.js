// Main-thread responsiveness, measured: a PerformanceObserver for 'longtask' entries (tasks of
// over 50 ms) exposed as window.nblPerf, so tests and developers can check that generation,
// which runs in a worker, never blocks the page: nblPerf.during('generation') lists the long
// tasks that overlapped a generation.

const tasks = [];
const marks = new Map();
const spans = []; // { kind, start, end }: e.g. each generation, from request to last token
let supported = false;

try {
  const po = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) tasks.push({ start: e.startTime, duration: e.duration, name: e.name });
  });
  po.observe({ type: 'longtask', buffered: true });
  supported = true;
} catch { /* Safari and Firefox have no longtask entries */ }

// Long animation frames (Chromium) say where a slow frame went: scripts, style and layout, paint.
const frames = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      frames.push({
        start: e.startTime, duration: e.duration, blocking: e.blockingDuration,
        render: e.renderStart ? e.startTime + e.duration - e.renderStart : 0,
        layout: e.styleAndLayoutStart ? e.startTime + e.duration - e.styleAndLayoutStart : 0,
        scripts: e.scripts.map((x) => ({ src: x.sourceURL, fn: x.sourceFunctionName, invoker: x.invoker, duration: x.duration })),
      });
      if (frames.length > 200) frames.shift();
    }
  }).observe({ type: 'long-animation-frame', buffered: true });
} catch { /* not Chromium */ }

export const perf = {
  get supported() { return supported; },
  tasks,
  frames,
  spans,
  mark(name) { marks.set(name, performance.now()); },
  /** Opens a span of `kind`; call the returned function when it ends. */
  begin(kind) {
    const s = { kind, start: performance.now(), end: null };
    spans.push(s);
    return () => { s.end = performance.now(); };
  },
  /** Long tasks overlapping any span of `kind` (e.g. 'generation'). */
  during(kind) {
    const list = spans.filter((s) => s.kind === kind);
    return tasks.filter((t) => list.some((s) => t.start < (s.end ?? Infinity) && t.start + t.duration > s.start));
  },
  /** Long tasks that started after mark(name) (and before mark(until), when given). */
  since(name, until) {
    const t0 = marks.get(name) ?? 0;
    const t1 = until ? marks.get(until) ?? Infinity : Infinity;
    return tasks.filter((t) => t.start >= t0 && t.start < t1);
  },
};

globalThis.nblPerf = perf;
