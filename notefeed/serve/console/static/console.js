// The notefeed operator console: one page per path under /console, data from /v1/admin/...
// Everything user-written (note titles, ids) is inserted as text, never as HTML.
"use strict";
(function () {
  const main = document.getElementById("main");
  const banner = document.getElementById("banner");
  const TOKEN_KEY = "notefeed.console.token";
  const fmt = NFChart.format;
  const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%");
  const ms = (v) => (v === null || v === undefined ? "–" : v.toFixed(v < 10 ? 2 : 1) + " ms");
  const clock = (t) => new Date(t * 1000).toISOString().slice(11, 19);

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) { continue; }
      if (k.startsWith("on")) { el.addEventListener(k.slice(2), v); } else { el.setAttribute(k, v === true ? "" : v); }
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) { continue; }
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const table = (head, rows, numeric) => h("table", {},
    h("thead", {}, h("tr", {}, head.map((x, i) => h("th", { class: (numeric || []).includes(i) ? "num" : null }, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((x, i) => h("td", { class: (numeric || []).includes(i) ? "num" : null }, x))))));
  const card = (label, value) => h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
  const panel = (...c) => h("div", { class: "panel" }, ...c);
  const canvas = (id) => h("canvas", { id });

  function say(msg, error) {
    banner.textContent = msg || "";
    banner.className = "banner" + (error ? " error" : "") + (msg ? "" : " hidden");
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
  document.getElementById("token").value = token();
  document.getElementById("token-save").addEventListener("click", () => {
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    location.reload();
  });

  class HttpError extends Error { constructor(status, msg) { super(msg); this.status = status; } }
  async function api(path, init) {
    const headers = Object.assign({ "Accept": "application/json" }, (init && init.headers) || {});
    if (token()) { headers.Authorization = "Bearer " + token(); }
    const r = await fetch(path, Object.assign({}, init || {}, { headers }));
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      const detail = typeof body.detail === "string" ? body.detail : (body.message || r.statusText);
      throw new HttpError(r.status, detail);
    }
    return body;
  }

  // ------------------------------------------------------------------ pages
  async function overview() {
    const d = await api("/v1/admin/console/overview");
    const c = d.counts;
    main.append(h("h1", {}, "Overview"), h("div", { class: "cards" },
      card("notes", c.notes.toLocaleString()), card("users", c.users.toLocaleString()),
      card("creators", c.creators.toLocaleString()), card("logged events", c.logged_events.toLocaleString()),
      card("events accepted", c.events_accepted.toLocaleString()), card("notes published", c.notes_published.toLocaleString()),
      card("feed pages / s", fmt(d.qps.feed_pages_per_s)), card("requests", c.requests.toLocaleString()),
      card("model version", d.model.version || "–"),
      card("errors (stage / 5xx)", `${d.errors.stage_errors.reduce((a, e) => a + e.count, 0)} / ${d.errors.http_5xx}`),
      card("event lag", d.events.last_event_age_s === null ? "no events yet" : fmt(d.events.last_event_age_s) + " s"),
      card("side-effect queue", `${d.events.side_effects_queue} (dropped ${d.events.side_effects_dropped})`)));
    if (d.model.fallback.length) {
      main.append(panel(h("h2", {}, "Serving the fallback"), h("ul", {}, d.model.fallback.map((r) => h("li", {}, r)))));
    }
    const feed = d.latency.feed;
    main.append(h("div", { class: "grid2" },
      panel(canvas("chart-pages")),
      panel(h("h2", {}, "Feed latency by pipeline"), table(["pipeline", "pages", "p50", "p99"],
        feed.map((f) => [f.pipeline, f.count, ms(f.p50_ms), ms(f.p99_ms)]), [1, 2, 3]))));
    const st = d.latency.stages.filter((s) => s.count > 0);
    main.append(panel(canvas("chart-stages")), panel(h("h2", {}, "Per-stage latency"),
      table(["pipeline", "stage", "calls", "mean", "p50", "p99"],
        st.map((s) => [s.pipeline, s.stage, s.count, ms(s.mean_ms), ms(s.p50_ms), ms(s.p99_ms)]), [2, 3, 4, 5])));
    if (d.errors.stage_errors.length) {
      main.append(panel(h("h2", {}, "Stage errors (fail open)"), table(["stage", "count"],
        d.errors.stage_errors.map((e) => [e.stage, e.count]), [1])));
    }
    if (d.search) { main.append(searchPanel(d.search)); }
    NFChart.line(document.getElementById("chart-pages"), {
      title: "Feed pages per bucket", xFormat: clock, yMin: 0,
      series: [{ name: "pages", points: d.series.map((b) => [b.t, b.pages]) }],
    });
    const dflt = st.filter((s) => s.pipeline === (feed[0] || {}).pipeline);
    NFChart.bars(document.getElementById("chart-stages"), {
      title: `Stage latency, ${(feed[0] || {}).pipeline || ""} (ms)`, names: ["p50", "p99"],
      rows: dflt.map((s) => ({ label: s.stage, value: s.p50_ms, value2: s.p99_ms })),
    });
  }

  // Search: the index, the fusion that ranks its pages and, while `auto` decides, the
  // interleaving of RRF and the learned fusion (GET /v1/search/status)
  function searchPanel(s) {
    const f = s.fusion;
    const rows = [["index", s.ready ? `ready, ${(s.notes || 0).toLocaleString()} notes` : (s.error || "not built yet")]];
    if (f) {
      rows.push(["fusion serving", `${f.fusion} (configured: ${f.configured})`]);
      if (f.reason) { rows.push(["why", f.reason]); }
      if (f.interleaving) { rows.push(["interleaved now", pct(f.interleaving) + " of searches"]); }
      const il = f.learned && f.learned.interleaving;
      if (il) {
        rows.push(["interleaving verdict", `${il.verdict}: ${il.pages} of ${il.pages_needed} searches with a click; ` +
          `learned won ${il.learned_wins}, RRF ${il.rrf_wins}, ties ${il.ties}` +
          (il.verdict === "collecting" ? "" : `; sign test p = ${fmt(il.p_value)}`)]);
      }
    }
    if (s.log) { rows.push(["search log", `${s.log.searches.toLocaleString()} searches, ${s.log.searches_with_click.toLocaleString()} with a click`]); }
    return panel(h("h2", {}, "Search"), table(["", ""], rows));
  }

  async function feedPage() {
    const params = new URLSearchParams(location.search);
    const users = (await api("/v1/admin/console/users?limit=30")).users;
    const userId = params.get("user_id") || (users[0] || {}).user_id || "";
    const input = h("input", { id: "user-id", value: userId, list: "user-list", placeholder: "user id" });
    const n = h("input", { id: "page-n", type: "number", min: 1, max: 100, value: params.get("n") || 10, style: "width:5em" });
    const go = () => { location.search = "?" + new URLSearchParams({ user_id: input.value.trim(), n: n.value }); };
    main.append(h("h1", {}, "Feed inspector"), h("div", { class: "row" }, "user",
      input, h("datalist", { id: "user-list" }, users.map((u) => h("option", { value: u.user_id }, `${u.events} events`))),
      "page size", n, h("button", { id: "load-feed", onclick: go }, "Show page")));
    if (!userId) { main.append(panel("No users in this workspace yet.")); return; }
    const d = await api("/v1/admin/console/feed?" + new URLSearchParams({ user_id: userId, n: n.value }));
    main.append(h("div", { class: "cards" }, card("user", d.user_id), card("history", d.user.history_len),
      card("pipeline", d.pipeline), card("arm", d.arm || "no experiment"), card("model", d.model_version || "–"),
      card("total", ms(d.total_ms)), d.user.erased_at ? card("erased", new Date(d.user.erased_at * 1000).toISOString().slice(0, 19)) : null));
    // Erase: DELETE /v1/users/{id} (needs the write token): a deleted account or a deletion request
    const erase = async () => {
      if (!window.confirm(`Erase ${d.user_id}? Their events, searches, follows and blocks leave the logs, ` +
        "every worker forgets them, and the next train's sync deletes them from the store.")) { return; }
      try {
        await api("/v1/users/" + encodeURIComponent(d.user_id), { method: "DELETE" });
        document.body.dataset.action = "erased " + d.user_id;
        location.reload();
      } catch (e) {
        say(e.status === 401 ? "erasing a user needs the API write token: enter it above" : `erase failed (${e.status}): ${e.message}`, true);
        document.body.dataset.action = `failed ${e.status}`;
      }
    };
    main.append(h("div", { class: "row" }, h("button", { id: "erase-user", onclick: erase,
      title: "erase this user's data (an account deletion or a deletion request)" }, "Erase user")));
    const fine = (it) => Object.entries(it.fine_scores || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(", ");
    main.append(panel(h("h2", {}, `Page for ${d.user_id}`), table(
      ["rank", "before re-rank", "note", "author", "channels", "recall", "coarse", "fine", "fused", "why"],
      d.items.map((it) => [it.rank_after, it.rank_before ?? "–",
        h("a", { href: "/console/note?note_id=" + encodeURIComponent(it.note_id) }, it.title || it.note_id),
        [it.author_id, it.small_creator ? h("span", { class: "tag ok" }, "small") : null],
        it.channels.map((c) => h("span", { class: "tag" }, c)),
        fmt(it.recall_score), fmt(it.coarse_score), fine(it), fmt(it.fused_score),
        h("span", { class: "muted" }, it.why.join("; "))]), [0, 1, 5, 6, 8])));
    main.append(panel(canvas("chart-trace")));
    NFChart.bars(document.getElementById("chart-trace"), {
      title: "Stages of this request (ms)", names: ["ms"],
      rows: d.stages.map((s) => ({ label: `${s.kind}:${s.name} (${s.n_in}→${s.n_out})`, value: s.ms })),
    });
    if (d.errors.length) { main.append(panel(h("h2", {}, "Errors"), h("ul", {}, d.errors.map((e) => h("li", {}, e))))); }
  }

  async function notePage() {
    const params = new URLSearchParams(location.search);
    const lists = await api("/v1/admin/console/notes?limit=15");
    const noteId = params.get("note_id") || ((lists.newest[0] || lists.popular[0]) || {}).note_id || "";
    const input = h("input", { id: "note-id", value: noteId, list: "note-list", placeholder: "note id" });
    main.append(h("h1", {}, "Note inspector"), h("div", { class: "row" }, "note", input,
      h("datalist", { id: "note-list" }, [...lists.newest, ...lists.popular].map((x) => h("option", { value: x.note_id }, x.title || ""))),
      h("button", { id: "load-note", onclick: () => { location.search = "?note_id=" + encodeURIComponent(input.value.trim()); } }, "Inspect")));
    if (!noteId) { main.append(panel("No notes yet.")); return; }
    const d = await api("/v1/admin/console/note?note_id=" + encodeURIComponent(noteId));
    const n = d.note;
    main.append(h("div", { class: "cards" }, card("note", n.note_id), card("title", n.title || "–"),
      card("author", n.author_id), card("category", n.category || "–"), card("small creator", d.small_creator ? "yes" : "no"),
      card("popularity", fmt(d.popularity)),
      card("status", d.removed ? "removed " + clock(d.removed.at) + (d.removed.reason ? " (" + d.removed.reason + ")" : "") : "live")));
    if (!d.removed) {
      // Take down: DELETE /v1/notes/{id} (needs the write token); no feed, related list or search shows it again
      const reason = h("input", { id: "remove-reason", placeholder: "reason (optional)", maxlength: "500" });
      const remove = async () => {
        if (!window.confirm(`Take ${n.note_id} down? No feed, related list or search will show it again.`)) { return; }
        try {
          await api("/v1/notes/" + encodeURIComponent(n.note_id) + (reason.value.trim() ? "?reason=" + encodeURIComponent(reason.value.trim()) : ""),
            { method: "DELETE" });
          document.body.dataset.action = "removed " + n.note_id;
          location.reload();
        } catch (e) {
          say(e.status === 401 ? "taking a note down needs the API write token: enter it above" : `take down failed (${e.status}): ${e.message}`, true);
          document.body.dataset.action = `failed ${e.status}`;
        }
      };
      main.append(h("div", { class: "row" }, reason, h("button", { id: "remove-note", onclick: remove,
        title: "remove this note from every feed, related list and search" }, "Take down")));
    } else {
      // Restore: POST /v1/notes/{id}/restore (needs the write token); feeds, related lists and search show it again
      const reason = h("input", { id: "restore-reason", placeholder: "reason (optional)", maxlength: "500" });
      const restore = async () => {
        if (!window.confirm(`Restore ${n.note_id}? Feeds, related lists and search will show it again.`)) { return; }
        try {
          await api("/v1/notes/" + encodeURIComponent(n.note_id) + "/restore" + (reason.value.trim() ? "?reason=" + encodeURIComponent(reason.value.trim()) : ""),
            { method: "POST" });
          document.body.dataset.action = "restored " + n.note_id;
          location.reload();
        } catch (e) {
          say(e.status === 401 ? "restoring a note needs the API write token: enter it above" : `restore failed (${e.status}): ${e.message}`, true);
          document.body.dataset.action = `failed ${e.status}`;
        }
      };
      main.append(h("div", { class: "row" }, reason, h("button", { id: "restore-note", onclick: restore,
        title: "undo the takedown: feeds, related lists and search show this note again" }, "Restore")));
    }
    if (d.restores && d.restores.length) {
      main.append(panel(h("h2", {}, "Takedowns undone"), table(["taken down", "why", "restored", "why"],
        d.restores.map((r) => [clock(r.removed_at), r.removed_reason || "–", clock(r.restored_at), r.reason || "–"]))));
    }
    const cs = d.coldstart;
    const pool = !d.coldstart_enabled ? "the cold-start pool is off" : !cs ? "not in the cold-start pool (a catalogue note, or handed over before restart)" : null;
    main.append(h("div", { class: "grid2" },
      panel(h("h2", {}, "Cold-start pool"), pool ? h("p", { class: "muted" }, pool) : table(["", ""], [
        ["stage", h("span", { class: "tag" }, cs.stage)], ["impressions", `${cs.impressions} of ${cs.handover_impressions} before hand-over`],
        ["clicks", cs.clicks], ["engagers (look-alike seed)", cs.engagers],
        ["bandit posterior CTR", `${pct(cs.posterior.mean)} [${pct(cs.posterior.lo)}, ${pct(cs.posterior.hi)}] (Beta ${fmt(cs.posterior.alpha)}, ${fmt(cs.posterior.beta)})`],
      ]), d.coldstart_summary ? h("p", { class: "muted" }, "pool: " + Object.entries(d.coldstart_summary).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")) : null),
      panel(canvas("chart-exposure"))));
    main.append(panel(h("h2", {}, "Related notes"), table(["#", "note", "author", "category", "score"],
      d.related.map((r, i) => [i + 1, h("a", { href: "/console/note?note_id=" + encodeURIComponent(r.note_id) }, r.title || r.note_id),
        r.author_id, r.category, fmt(r.score)]), [0, 4])));
    NFChart.line(document.getElementById("chart-exposure"), {
      title: "Exposure over time (impressions served)", xFormat: clock, yMin: 0,
      series: [{ name: "impressions", points: d.exposure.map((b) => [b.t, b.impressions]) }],
    });
  }

  async function creatorsPage() {
    const d = await api("/v1/admin/console/creators");
    main.append(h("h1", {}, "Creators & fairness"), h("div", { class: "cards" },
      card("small-creator target", d.target === null ? "off" : pct(d.target)),
      card("latest small share", pct((d.series.filter((b) => b.small_creator_share !== null).slice(-1)[0] || {}).small_creator_share)),
      card("latest creator Gini", fmt((d.series.filter((b) => b.creator_gini !== null).slice(-1)[0] || {}).creator_gini)),
      card("bucket", d.bucket_s + " s")));
    main.append(h("div", { class: "grid2" }, panel(canvas("chart-small")), panel(canvas("chart-gini"))));
    main.append(panel(h("h2", {}, "Most exposed creators"), table(["creator", "followers", "impressions"],
      d.top_creators.map((c) => [c.creator_id, c.followers.toLocaleString(), c.impressions]), [1, 2])));
    NFChart.line(document.getElementById("chart-small"), {
      title: "Small-creator share of impressions", xFormat: clock, yFormat: pct, yMin: 0, yMax: 1,
      target: d.target === null ? null : { y: d.target, label: "target " + pct(d.target) },
      series: [{ name: "small-creator share", points: d.series.map((b) => [b.t, b.small_creator_share]) }],
    });
    NFChart.line(document.getElementById("chart-gini"), {
      title: "Creator Gini of impressions (all creators)", xFormat: clock, yMin: 0, yMax: 1,
      series: [{ name: "Gini", color: "#dc2626", points: d.series.map((b) => [b.t, b.creator_gini]) }],
    });
  }

  const METRICS = [["ctr", "CTR", pct], ["like_rate", "like rate", pct], ["collect_rate", "collect rate", pct],
    ["small_creator_share", "small-creator share", pct], ["dwell_s", "dwell (s)", fmt], ["latency_ms", "latency", ms]];
  async function experimentsPage() {
    const d = await api("/v1/admin/experiments");
    main.append(h("h1", {}, "Experiments"));
    if (!d.active) {
      main.append(panel(h("p", {}, "No experiment is running. Add an ", h("code", {}, "experiments"),
        " section (a name and two or more arms with config overlays) to the serving config; see configs/default.yaml.")));
      return;
    }
    const srm = d.sample_ratio;
    main.append(h("div", { class: "cards" }, card("experiment", d.name), card("primary metric", d.primary),
      card("confidence", pct(d.level)),
      card("sample ratio", srm.p === null ? "–" : (srm.mismatch ? "MISMATCH " : "ok ") + `p=${fmt(srm.p)}`),
      card("verdict", d.significant.length ? "significant: " + d.significant.join(", ") : "no significant difference")));
    const cell = (m, f) => m.value === null ? "–" : `${f(m.value)}` + (m.lo !== null && m.lo !== undefined ? ` [${f(m.lo)}, ${f(m.hi)}]` : "");
    main.append(panel(h("h2", {}, "Arms (first = control)"), table(
      ["arm", "weight", "users", "pages", "impressions", ...METRICS.map((m) => m[1])],
      d.arms.map((a) => [a.name, a.weight, a.users, a.pages, a.impressions, ...METRICS.map(([k, , f]) => cell(a.metrics[k], f))]),
      [1, 2, 3, 4])));
    for (const diff of d.differences) {
      const id = "chart-diff-" + diff.arm.replace(/[^A-Za-z0-9_-]/g, "");
      main.append(panel(canvas(id)));
      const rows = METRICS.filter(([k]) => k !== "latency_ms" && k !== "dwell_s").map(([k, label]) => {
        const x = diff.metrics[k];
        return { label, value: x.diff, lo: x.lo, hi: x.hi, significant: x.significant, note: x.p === null ? "" : `p=${fmt(x.p)}` };
      });
      NFChart.intervals(document.getElementById(id), {
        title: `${diff.arm} − ${diff.control}: rate differences with ${pct(d.level)} intervals`, format: pct, rows,
      });
    }
  }

  const post = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}) });
  const value = (v) => (v === null || v === undefined ? "null" : typeof v === "object" ? JSON.stringify(v) : String(v));

  async function modelsPage() {
    const d = await api("/v1/admin/console/models");
    main.append(h("h1", {}, "Models & config"), h("div", { class: "cards" }, card("served version", d.served || "fallback"),
      card("reload", d.reload.state + (d.reload.target ? " " + d.reload.target : "")), card("rollback target", d.rollback_to || "–")));
    // Serve: hot-swap the version in and promote it in the model store (a restart serves it too);
    // Roll back: the same with the store's rollback. Both need the write token.
    const act = async (btn, path, body, what) => {
      for (const b of document.querySelectorAll("button.promote, button.rollback")) { b.disabled = true; }
      say(`${what}: loading the version…`);
      try {
        const r = await post(path, body);
        say(`${r.status} ${r.version}: serving it now and recorded in the model store` +
          (r.previous_promoted && r.previous_promoted !== r.version ? ` (was ${r.previous_promoted})` : ""));
        document.body.dataset.action = `${r.status} ${r.version}`;
        setTimeout(() => location.reload(), 800);
      } catch (e) {
        say(e.status === 401 ? `${what} needs the API write token: enter it above` : `${what} failed (${e.status}): ${e.message}`, true);
        document.body.dataset.action = `failed ${e.status}`;
        for (const b of document.querySelectorAll("button.promote, button.rollback")) { b.disabled = false; }
      }
    };
    if (d.store_error) { main.append(panel(h("p", { class: "banner error" }, d.store_error))); }
    main.append(panel(h("h2", {}, "Versions in the model store"), d.versions.length ? table(
      ["version", "created", "promoted", "served", "metrics", ""],
      d.versions.map((v) => [v.version, v.created_at, v.promoted ? h("span", { class: "tag ok" }, "promoted") : "",
        v.version === d.served ? h("span", { class: "tag" }, "serving") : "",
        h("span", { class: "muted" }, Object.entries(v.metrics).slice(0, 4).map(([k, x]) => `${k}: ${typeof x === "number" ? fmt(x) : JSON.stringify(x)}`).join("; ")),
        [v.version === d.served && v.promoted ? null : h("button", { class: "promote", "data-version": v.version,
          title: "serve this version now and promote it in the model store",
          onclick: (e) => act(e.target, "/v1/admin/console/models/promote", { version: v.version }, "serve " + v.version) }, "Serve"),
        v.version === d.rollback_to ? h("button", { class: "secondary rollback", "data-version": v.version,
          title: "roll the model store back to this version and serve it",
          onclick: (e) => act(e.target, "/v1/admin/console/models/rollback", {}, "roll back") }, "Roll back") : null]]))
      : h("p", { class: "muted" }, "No trained versions (run `notefeed train`).")));

    // the config editor: validate (a dry run) or apply through POST /v1/admin/config
    const area = h("textarea", { id: "config-yaml", spellcheck: "false", rows: 24 }, d.config_yaml);
    const out = h("div", { id: "config-result" });
    const running = h("pre", { id: "config" }, JSON.stringify(d.config, null, 2));
    const show = (state, text, changes) => {
      out.replaceChildren(h("p", { class: "tag " + (state === "error" ? "warn" : "ok"), id: "config-status" }, text));
      if (changes && changes.length) {
        out.append(table(["field", "running", "new", "changes"], changes.map((c) => [h("code", {}, c.field), value(c.old), value(c.new),
          c.hot ? h("span", { class: "tag ok" }, "live") : h("span", { class: "tag warn" }, "restart")])));
      }
      out.dataset.state = state;
    };
    const submit = async (dryRun) => {
      const text = area.value;
      let local;
      try {
        local = await post("/v1/admin/console/config/validate", { yaml: text });
      } catch (e) { show("error", `${e.status}: ${e.message}`); return; }
      if (!local.ok) { show("error", "422: " + local.error); return; }
      const changes = local.changes || [];
      try {
        const r = await post("/v1/admin/config", { yaml: text, dry_run: dryRun });
        const sections = r.changed.length ? r.changed.join(", ") : "nothing";
        if (dryRun) {
          show("valid", `valid: applying it would change ${sections} live`, changes);
        } else {
          show("applied", `applied live: ${sections} changed (version ${r.version || "fallback"}). ` +
            (r.shared ? `Shared with every serving process (live change ${r.shared}); a start with the same config file applies it again. ` : "") +
            "The config file is unchanged: write it too to keep it for good.", changes);
          running.textContent = JSON.stringify((await api("/v1/admin/console/models")).config, null, 2);
        }
      } catch (e) {
        const msg = e.status === 401 ? "401: validating and applying go through POST /v1/admin/config and need the API write token: enter it above"
          : e.status === 409 ? `409: ${e.message}` : `${e.status}: ${e.message}`;
        show("error", msg, changes);
      }
    };
    main.append(h("div", { class: "grid2" },
      panel(h("h2", {}, "Serving config (running)"), running),
      panel(h("h2", {}, "Change the config"), area, h("div", { class: "row" },
        h("button", { id: "validate", onclick: () => submit(true) }, "Validate"),
        h("button", { id: "apply", onclick: () => submit(false) }, "Apply live")), out,
      h("p", { class: "muted" }, "Live: fusion, rerank, exposure, coarse.keep and each recall channel's quota. " +
        "Anything else (channels, scorers, filters, page, api, online, coldstart, experiments) is refused with the field " +
        "named: restart `notefeed serve --config FILE`. Model versions swap live."))));
  }

  const PAGES = { overview, feed: feedPage, note: notePage, creators: creatorsPage, experiments: experimentsPage, models: modelsPage };
  async function route() {
    const page = location.pathname.replace(/\/+$/, "").split("/")[2] || "overview";
    for (const a of document.querySelectorAll("#nav a")) { a.classList.toggle("active", a.dataset.page === page); }
    document.title = `notefeed console: ${page}`;
    const render = PAGES[page] || overview;
    const t0 = performance.now();
    try {
      await render();
      document.body.dataset.renderMs = String(Math.round(performance.now() - t0));
      // the page's data is in the DOM (every fetch it made answered and was drawn): milliseconds
      // since navigation start, what `notefeed bench console` reports
      document.body.dataset.renderedAt = performance.now().toFixed(1);
    } catch (e) {
      if (e.status === 401) {
        say("This server requires the API token for reads: enter it above.", true);
      } else {
        say(`could not load ${page}: ${e.message}`, true);
      }
      document.body.dataset.error = e.message;
    }
    document.body.dataset.ready = page;
  }
  route();
})();
