// nfchart: the console's own small charting code (canvas 2D, no dependencies).
//   NFChart.line(canvas, {series: [{name, color, points: [[x, y], ...]}], target: {y, label},
//                          yMin, yMax, xFormat, yFormat, title})
//   NFChart.bars(canvas, {rows: [{label, value, value2}], names: [n1, n2], format, title})
//   NFChart.intervals(canvas, {rows: [{label, value, lo, hi, significant}], format, title})
"use strict";
(function (global) {
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];
  const FONT = "12px system-ui, sans-serif";

  function setup(canvas, height) {
    const dpr = global.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.parentElement.clientWidth || 600;
    const h = height || canvas.clientHeight || 220;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.height = h + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;
    return { ctx, w, h };
  }

  // about n "nice" ticks covering [lo, hi]
  function ticks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / Math.max(n, 1);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) { out.push(+v.toPrecision(12) || 0); }
    return out;
  }

  function fmtDefault(v) {
    if (v === null || v === undefined || !isFinite(v)) { return "–"; }
    const a = Math.abs(v);
    if (a >= 1000) { return v.toFixed(0); }
    if (a >= 10) { return v.toFixed(1); }
    if (a >= 1) { return v.toFixed(2); }
    return v.toFixed(3);
  }

  function title(ctx, text, w) {
    if (!text) { return 0; }
    ctx.fillStyle = "#111827";
    ctx.font = "bold 13px system-ui, sans-serif";
    ctx.fillText(text, 8, 16);
    ctx.font = FONT;
    return 20;
  }

  function empty(ctx, w, h, msg) {
    ctx.fillStyle = "#6b7280";
    ctx.textAlign = "center";
    ctx.fillText(msg || "no data yet", w / 2, h / 2);
    ctx.textAlign = "left";
  }

  function line(canvas, opt) {
    const { ctx, w, h } = setup(canvas, opt.height);
    const top = 8 + title(ctx, opt.title, w);
    const series = (opt.series || []).map((s, i) => ({
      ...s, color: s.color || PALETTE[i % PALETTE.length],
      points: (s.points || []).filter((p) => p[1] !== null && p[1] !== undefined && isFinite(p[1])),
    }));
    const pts = series.flatMap((s) => s.points);
    if (!pts.length) { empty(ctx, w, h, opt.empty); return; }
    const fx = opt.xFormat || fmtDefault, fy = opt.yFormat || fmtDefault;
    let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
    let y0 = opt.yMin !== undefined ? opt.yMin : Math.min(...pts.map((p) => p[1]));
    let y1 = opt.yMax !== undefined ? opt.yMax : Math.max(...pts.map((p) => p[1]));
    if (opt.target && isFinite(opt.target.y)) { y0 = Math.min(y0, opt.target.y); y1 = Math.max(y1, opt.target.y); }
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const L = 52, R = 12, B = 34, T = top + 14;
    const X = (x) => L + (x - x0) / (x1 - x0) * (w - L - R);
    const Y = (y) => h - B - (y - y0) / (y1 - y0) * (h - B - T);
    ctx.strokeStyle = "#e5e7eb"; ctx.fillStyle = "#6b7280"; ctx.lineWidth = 1;
    for (const t of ticks(y0, y1, 4)) {
      ctx.beginPath(); ctx.moveTo(L, Y(t)); ctx.lineTo(w - R, Y(t)); ctx.stroke();
      ctx.textAlign = "right"; ctx.fillText(fy(t), L - 6, Y(t) + 4);
    }
    ctx.textAlign = "center";
    for (const t of ticks(x0, x1, Math.max(2, Math.floor((w - L - R) / 90)))) {
      if (t < x0 || t > x1) { continue; }
      ctx.fillText(fx(t), X(t), h - B + 16);
    }
    ctx.textAlign = "left";
    if (opt.target && isFinite(opt.target.y)) {
      ctx.save(); ctx.setLineDash([6, 4]); ctx.strokeStyle = "#111827";
      ctx.beginPath(); ctx.moveTo(L, Y(opt.target.y)); ctx.lineTo(w - R, Y(opt.target.y)); ctx.stroke();
      ctx.restore();
      ctx.fillStyle = "#111827"; ctx.fillText(opt.target.label || "target", L + 4, Y(opt.target.y) - 4);
    }
    for (const s of series) {
      ctx.strokeStyle = s.color; ctx.fillStyle = s.color; ctx.lineWidth = 2;
      ctx.beginPath();
      s.points.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
      ctx.stroke();
      for (const p of s.points) { ctx.beginPath(); ctx.arc(X(p[0]), Y(p[1]), 2.5, 0, 2 * Math.PI); ctx.fill(); }
    }
    let lx = L;
    for (const s of series) {  // legend, bottom row
      ctx.fillStyle = s.color; ctx.fillRect(lx, h - 12, 10, 3);
      ctx.fillStyle = "#374151"; ctx.fillText(s.name || "", lx + 14, h - 7);
      lx += 24 + ctx.measureText(s.name || "").width;
    }
  }

  function bars(canvas, opt) {
    const rows = opt.rows || [];
    const names = opt.names || [];
    const height = opt.height || Math.max(60, 24 + rows.length * (names.length > 1 ? 30 : 20) + 20);
    const { ctx, w, h } = setup(canvas, height);
    const top = 6 + title(ctx, opt.title, w);
    if (!rows.length) { empty(ctx, w, h, opt.empty); return; }
    const f = opt.format || fmtDefault;
    const L = Math.min(260, 12 + Math.max(...rows.map((r) => ctx.measureText(r.label).width)));
    const vmax = Math.max(1e-12, ...rows.flatMap((r) => [r.value || 0, r.value2 || 0]));
    const rowH = (h - top - 20) / rows.length;
    const barH = names.length > 1 ? rowH * 0.38 : rowH * 0.7;
    rows.forEach((r, i) => {
      const y = top + i * rowH;
      ctx.fillStyle = "#374151"; ctx.textAlign = "right";
      ctx.fillText(r.label, L - 6, y + rowH / 2 + 4);
      ctx.textAlign = "left";
      [r.value, r.value2].slice(0, Math.max(names.length, 1)).forEach((v, k) => {
        if (v === null || v === undefined) { return; }
        const bw = (v / vmax) * (w - L - 70);
        ctx.fillStyle = PALETTE[k];
        ctx.fillRect(L, y + (rowH - barH * Math.max(names.length, 1)) / 2 + k * barH, Math.max(bw, 1), barH - 1);
        ctx.fillStyle = "#111827";
        ctx.fillText(f(v), L + bw + 4, y + (rowH - barH * Math.max(names.length, 1)) / 2 + k * barH + barH - 3);
      });
    });
    let lx = L;
    names.forEach((n, k) => {
      ctx.fillStyle = PALETTE[k]; ctx.fillRect(lx, h - 12, 10, 8);
      ctx.fillStyle = "#374151"; ctx.fillText(n, lx + 14, h - 4);
      lx += 24 + ctx.measureText(n).width;
    });
  }

  // a forest plot: each row a point with its interval, a zero line; significant rows in red
  function intervals(canvas, opt) {
    const rows = (opt.rows || []).filter((r) => r.value !== null && r.value !== undefined);
    const { ctx, w, h } = setup(canvas, opt.height || Math.max(70, 40 + rows.length * 26));
    const top = 6 + title(ctx, opt.title, w);
    if (!rows.length) { empty(ctx, w, h, opt.empty); return; }
    const f = opt.format || fmtDefault;
    const L = Math.min(220, 12 + Math.max(...rows.map((r) => ctx.measureText(r.label).width)));
    const R = 110, B = 22;
    const vals = rows.flatMap((r) => [r.value, r.lo, r.hi].filter((v) => v !== null && v !== undefined && isFinite(v)));
    let lo = Math.min(0, ...vals), hi = Math.max(0, ...vals);
    if (hi === lo) { hi += 1; }
    const pad = (hi - lo) * 0.05; lo -= pad; hi += pad;
    const X = (v) => L + (v - lo) / (hi - lo) * (w - L - R);
    const rowH = (h - top - B) / rows.length;
    ctx.strokeStyle = "#9ca3af"; ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(X(0), top); ctx.lineTo(X(0), h - B); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = "#6b7280"; ctx.textAlign = "center";
    for (const t of ticks(lo, hi, 4)) { ctx.fillText(f(t), X(t), h - 6); }
    rows.forEach((r, i) => {
      const y = top + i * rowH + rowH / 2;
      const c = r.significant ? "#dc2626" : "#2563eb";
      ctx.fillStyle = "#374151"; ctx.textAlign = "right"; ctx.fillText(r.label, L - 8, y + 4);
      ctx.strokeStyle = c; ctx.lineWidth = 2;
      if (r.lo !== null && r.hi !== null && r.lo !== undefined && r.hi !== undefined) {
        ctx.beginPath(); ctx.moveTo(X(r.lo), y); ctx.lineTo(X(r.hi), y); ctx.stroke();
        for (const e of [r.lo, r.hi]) { ctx.beginPath(); ctx.moveTo(X(e), y - 5); ctx.lineTo(X(e), y + 5); ctx.stroke(); }
      }
      ctx.fillStyle = c; ctx.beginPath(); ctx.arc(X(r.value), y, 4, 0, 2 * Math.PI); ctx.fill();
      ctx.textAlign = "left"; ctx.fillStyle = "#111827";
      ctx.fillText(f(r.value) + (r.note ? " " + r.note : ""), w - R + 8, y + 4);
    });
    ctx.textAlign = "left"; ctx.lineWidth = 1;
  }

  global.NFChart = { line, bars, intervals, ticks, format: fmtDefault };
})(window);
