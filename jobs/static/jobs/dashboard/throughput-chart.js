/*
 * The overview's throughput chart (#chart, an inline SVG): finished and failed jobs per second over
 * the last 5 minutes, one bucket per second, fed by the frames' counter deltas (finished =
 * succeeded + failed). It starts empty when the page opens: there is no history to read.
 */
import { setText } from "./dom.js";
import { fmtCount } from "./format.js";

const CHART_SECONDS = 300;

export function throughputChart() {
  const chartDone = new Float64Array(CHART_SECONDS);
  const chartFailed = new Float64Array(CHART_SECONDS);
  const chartStamp = new Float64Array(CHART_SECONDS);
  const nowSecond = () => Math.floor(Date.now() / 1000);

  /** Count one frame's deltas into the current second's bucket. */
  function add(deltas) {
    const done = Math.max(0, deltas.succeeded || 0) + Math.max(0, deltas.failed || 0);
    const failed = Math.max(0, deltas.failed || 0);
    if (!done && !failed) return;
    const second = nowSecond();
    const slot = second % CHART_SECONDS;
    if (chartStamp[slot] !== second) {
      chartStamp[slot] = second;
      chartDone[slot] = 0;
      chartFailed[slot] = 0;
    }
    chartDone[slot] += done;
    chartFailed[slot] += failed;
  }

  function series(values, now) {
    const out = [];
    for (let i = CHART_SECONDS - 1; i >= 0; i -= 1) {
      const second = now - i;
      const slot = second % CHART_SECONDS;
      out.push(chartStamp[slot] === second ? values[slot] : 0);
    }
    return out;
  }

  /** Redraw both lines, the scale and the 10-second rates. */
  function draw() {
    const now = nowSecond() - 1; // the current second is still filling
    const done = series(chartDone, now);
    const failed = series(chartFailed, now);
    const peak = Math.max(1, ...done);
    const scale = 10 ** Math.floor(Math.log10(peak));
    const top = Math.ceil(peak / scale) * scale;
    const points = (values) => values.map((v, i) => `${i},${(100 - (v / top) * 96).toFixed(1)}`).join(" ");
    document.getElementById("chart-done").setAttribute("points", points(done));
    document.getElementById("chart-failed").setAttribute("points", points(failed));
    setText(document.getElementById("chart-max"), fmtCount(top));
    const recent = (values) => values.slice(-10).reduce((a, b) => a + b, 0) / 10;
    setText(document.getElementById("rate-done"), recent(done).toFixed(1));
    setText(document.getElementById("rate-failed"), recent(failed).toFixed(1));
  }

  return { add, draw };
}
