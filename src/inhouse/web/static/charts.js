/* Tiny canvas charts for the admin page (no library): a line chart of recent samples and a bar chart.
 * Also the Prometheus text parser and histogram quantile used to feed them. */
(function () {
  "use strict";
  const I = window.inhouse;
  if (!I) return;

  function css(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }

  function setup(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width;
    const h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    return { ctx: ctx, w: w, h: h };
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    // Multiples whose quarter is a round number: the four gridlines get readable labels.
    for (const m of [1, 2, 4, 6, 8, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  class LineChart {
    constructor(canvas, options) {
      this.canvas = canvas;
      this.points = [];
      this.max = (options && options.points) || 40; // 2 minutes of 3-second polls
      this.format = (options && options.format) || function (v) { return String(Math.round(v * 10) / 10); };
      this.integer = !!(options && options.integer); // counts: whole-number gridlines (0, 1, 2, 3, 4 …)
      this.draw();
    }
    push(value) {
      this.points.push(value);
      if (this.points.length > this.max) this.points.shift();
      this.draw();
    }
    draw() {
      const { ctx, w, h } = setup(this.canvas);
      const pad = { l: 40, r: 8, t: 8, b: 18 };
      const values = this.points.filter(function (v) { return v !== null && isFinite(v); });
      let top = niceMax(Math.max.apply(null, values.concat([0])));
      if (this.integer) top = Math.max(4, Math.ceil(top / 4) * 4);
      ctx.strokeStyle = css("--border", "#e5e7eb");
      ctx.fillStyle = css("--muted", "#6b7280");
      ctx.lineWidth = 1;
      for (let i = 0; i <= 4; i++) {
        const y = pad.t + ((h - pad.t - pad.b) * i) / 4;
        ctx.beginPath(); ctx.moveTo(pad.l, y + 0.5); ctx.lineTo(w - pad.r, y + 0.5); ctx.stroke();
        ctx.fillText(this.format(top * (1 - i / 4)), 4, y + 4);
      }
      ctx.fillText(I.t("admin.chart_window"), pad.l, h - 4);
      if (this.points.length < 2) return;
      const step = (w - pad.l - pad.r) / (this.max - 1);
      const x0 = w - pad.r - step * (this.points.length - 1);
      const yOf = function (v) { return pad.t + (h - pad.t - pad.b) * (1 - (v || 0) / top); };
      const accent = css("--accent", "#4f46e5");
      ctx.beginPath();
      this.points.forEach(function (v, i) { const x = x0 + step * i; if (i) ctx.lineTo(x, yOf(v)); else ctx.moveTo(x, yOf(v)); });
      ctx.strokeStyle = accent; ctx.lineWidth = 2; ctx.stroke();
      ctx.lineTo(x0 + step * (this.points.length - 1), h - pad.b); ctx.lineTo(x0, h - pad.b); ctx.closePath();
      ctx.globalAlpha = 0.12; ctx.fillStyle = accent; ctx.fill(); ctx.globalAlpha = 1;
    }
  }

  class BarChart {
    constructor(canvas) { this.canvas = canvas; this.data = {}; this.draw(); }
    set(data) { this.data = data; this.draw(); }
    draw() {
      const { ctx, w, h } = setup(this.canvas);
      const entries = Object.entries(this.data);
      ctx.fillStyle = css("--muted", "#6b7280");
      if (!entries.length) { ctx.fillText(I.t("admin.no_data"), 12, h / 2); return; }
      const top = niceMax(Math.max.apply(null, entries.map(function (e) { return e[1]; })));
      const rowH = Math.min(28, (h - 8) / entries.length);
      const labelW = 90;
      const colors = [css("--accent", "#4f46e5"), "#0e9f6e", "#d97706", "#db2777", "#0891b2"];
      entries.forEach(function (e, i) {
        const y = 4 + i * rowH;
        const bw = ((w - labelW - 50) * e[1]) / top;
        ctx.fillStyle = css("--text", "#111827");
        ctx.fillText(e[0].slice(0, 14), 6, y + rowH / 2 + 4);
        ctx.fillStyle = colors[i % colors.length];
        ctx.fillRect(labelW, y + 4, Math.max(2, bw), rowH - 8);
        ctx.fillStyle = css("--muted", "#6b7280");
        ctx.fillText(String(e[1]), labelW + Math.max(2, bw) + 6, y + rowH / 2 + 4);
      });
    }
  }

  // Prometheus text format → [{name, labels, value}] (comments skipped).
  function parseMetrics(text) {
    const out = [];
    const re = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/;
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = re.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[3]) {
        for (const part of m[3].match(/\w+="(?:[^"\\]|\\.)*"/g) || []) {
          const eq = part.indexOf("=");
          labels[part.slice(0, eq)] = part.slice(eq + 2, -1);
        }
      }
      out.push({ name: m[1], labels: labels, value: parseFloat(m[4]) });
    }
    return out;
  }

  function sum(samples, name, filter) {
    return samples.filter(function (s) { return s.name === name && (!filter || filter(s.labels)); })
      .reduce(function (a, s) { return a + s.value; }, 0);
  }

  // Cumulative histogram buckets summed over label sets: {le → count}.
  function buckets(samples, name) {
    const by = {};
    for (const s of samples) if (s.name === name + "_bucket") by[s.labels.le] = (by[s.labels.le] || 0) + s.value;
    return by;
  }

  // Like PromQL's histogram_quantile: linear interpolation inside the bucket holding the quantile.
  function quantile(q, counts) {
    const les = Object.keys(counts).sort(function (a, b) { return parseFloat(a) - parseFloat(b); });
    if (!les.length) return null;
    const total = counts[les[les.length - 1]];
    if (!total) return null;
    const rank = q * total;
    let prevLe = 0;
    let prevCount = 0;
    for (const le of les) {
      const c = counts[le];
      if (c >= rank) {
        if (le === "+Inf") return prevLe;
        const upper = parseFloat(le);
        return c === prevCount ? upper : prevLe + ((upper - prevLe) * (rank - prevCount)) / (c - prevCount);
      }
      prevLe = le === "+Inf" ? prevLe : parseFloat(le);
      prevCount = c;
    }
    return prevLe;
  }

  I.charts = { LineChart: LineChart, BarChart: BarChart, parseMetrics: parseMetrics, sum: sum, buckets: buckets,
    quantile: quantile };
})();
