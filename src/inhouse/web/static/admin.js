/* Admin page (admins only; the API refuses everyone else anyway): live charts from /metrics, models, users,
 * groups, keys (a new secret is shown once), the egress evidence, and the audit log with filters and a
 * chain check. */
(function () {
  "use strict";
  const I = window.inhouse;
  if (!I || !I.signedIn) return;
  const t = I.t;
  const el = I.el;
  const $ = I.byId;
  const POLL_MS = 3000;

  if (!I.isAdmin()) { $("admin-denied").hidden = false; return; }
  $("admin-app").hidden = false;

  /* -- tabs (WAI-ARIA tabs: arrows move, Home/End jump) ---------------------------------------------- */

  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  const loaders = {};
  function selectTab(tab) {
    for (const other of tabs) {
      const on = other === tab;
      other.setAttribute("aria-selected", on ? "true" : "false");
      other.tabIndex = on ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !on;
    }
    const name = tab.id.slice(4);
    if (loaders[name]) loaders[name]();
  }
  tabs.forEach(function (tab, i) {
    tab.addEventListener("click", function () { selectTab(tab); });
    tab.addEventListener("keydown", function (e) {
      let next = null;
      if (e.key === "ArrowRight") next = tabs[(i + 1) % tabs.length];
      else if (e.key === "ArrowLeft") next = tabs[(i - 1 + tabs.length) % tabs.length];
      else if (e.key === "Home") next = tabs[0];
      else if (e.key === "End") next = tabs[tabs.length - 1];
      if (next) { e.preventDefault(); next.focus(); selectTab(next); }
    });
  });

  function cell(text, cls) { return el("td", cls ? { class: cls } : {}, text === null || text === undefined ? "—" : text); }
  function badge(text, kind) { return el("span", { class: "badge badge-" + kind }, text); }
  async function guarded(fn) { try { await fn(); } catch (e) { I.toast(e.message, "error"); } }

  /* -- overview: charts and models ------------------------------------------------------------------ */

  const C = I.charts;
  const charts = {
    tokens: new C.LineChart($("chart-tokens"), { format: function (v) { return v.toFixed(v < 10 ? 1 : 0); } }),
    queue: new C.LineChart($("chart-queue"), { integer: true, format: function (v) { return v.toFixed(0); } }),
    ttft: new C.LineChart($("chart-ttft"), { format: function (v) { return v.toFixed(2) + "s"; } }),
    dest: new C.BarChart($("chart-dest")),
  };
  let previous = null;

  async function pollMetrics() {
    let text;
    try { text = await (await I.api("/metrics", { raw: true })).text(); } catch (e) { return; }
    const samples = C.parseMetrics(text);
    const now = performance.now() / 1000;
    const tokens = C.sum(samples, "inhouse_generated_tokens_total");
    const hist = C.buckets(samples, "inhouse_time_to_first_token_seconds");
    const queue = C.sum(samples, "inhouse_queue_depth");
    let rate = 0;
    let p95 = C.quantile(0.95, hist);
    if (previous) {
      rate = Math.max(0, (tokens - previous.tokens) / Math.max(0.001, now - previous.at));
      // The p95 of the last interval when it saw requests, else of everything so far.
      const delta = {};
      for (const le of Object.keys(hist)) delta[le] = hist[le] - (previous.hist[le] || 0);
      const recent = C.quantile(0.95, delta);
      if (recent !== null) p95 = recent;
    }
    previous = { tokens: tokens, hist: hist, at: now };
    charts.tokens.push(rate);
    charts.queue.push(queue);
    charts.ttft.push(p95 === null ? 0 : p95);
    const dest = {};
    for (const s of samples) {
      if (s.name === "inhouse_requests_by_destination_total") dest[s.labels.destination] = s.value;
    }
    charts.dest.set(dest);
    $("value-tokens").textContent = rate.toFixed(1) + " tok/s";
    $("value-queue").textContent = String(queue);
    $("value-ttft").textContent = p95 === null ? "—" : p95.toFixed(2) + " s";
    const total = Object.values(dest).reduce(function (a, b) { return a + b; }, 0);
    $("value-dest").textContent = String(total);
    document.body.dataset.metricsPolls = String((parseInt(document.body.dataset.metricsPolls || "0", 10)) + 1);
  }

  async function loadModels() {
    await guarded(async function () {
      const models = (await I.api("/v1/models")).data;
      let status = null;
      try { status = await I.api("/v1/status"); } catch (e) { status = null; }
      const rows = I.clear($("model-rows"));
      for (const m of models) {
        const state = m.loaded ? badge(t("admin.loaded"), "ok") : m.present === false
          ? badge(t("admin.absent"), "muted") : badge(t("admin.on_disk"), "muted");
        rows.append(el("tr", { "data-model": m.id }, el("td", {}, el("strong", {}, m.id),
          el("div", { class: "muted small" }, m.description || "")),
        el("td", {}, state), cell(m.size_bytes ? I.fmtBytes(m.size_bytes) : null, "nowrap"), cell(m.quantization),
        el("td", { class: "small" }, profileText(m.tuned_profile)), el("td", { class: "small" }, idleText(m, status))));
      }
      hardwareText(status);
    });
  }

  // /v1/status: what the hardware probe proved and the weight path of each loaded model, with the reason.
  function hardwareText(status) {
    const note = I.clear($("hardware-note"));
    const hw = status && status.hardware;
    if (!hw) return;
    if (!hw.probed) { note.append(t("admin.hardware_not_probed")); return; }
    note.append(el("div", {}, el("strong", {}, t("admin.hardware") + ": "),
      hw.cpu + " · " + hw.cores + " · " + hw.bandwidth_gb_s + " GB/s · " + hw.amx));
    for (const [model, c] of Object.entries(hw.weight_buffers || {})) {
      note.append(el("div", { "data-weight-buffers": model }, el("strong", {}, t("admin.weight_buffers") + " · " + model + ": "),
        c.value + " — " + c.reason));
    }
  }

  // /v1/models says whether a tuned profile applies (or why not).
  function profileText(p) {
    if (p === undefined) return t("admin.coming");
    if (p === null) return t("admin.profile_none");
    if (p.status === "applied") return badge(t("admin.profile_applied") + (p.id ? " · " + p.id : ""), "ok");
    return badge(t("admin.profile_" + p.status), "warn");
  }

  // /v1/status: the idle timer of the loaded models.
  function idleText(m, status) {
    if (!status) return t("admin.coming");
    if (!status.idle_release_s) return t("admin.idle_off");
    if (!m.loaded) return t("admin.idle_released");
    return t("admin.idle_in", { s: Math.round(status.idle_release_in_s || 0), total: Math.round(status.idle_release_s) });
  }
  loaders.overview = loadModels;

  /* -- users, groups, keys -------------------------------------------------------------------------- */

  let users = [];
  async function loadUsers() {
    await guarded(async function () {
      users = (await I.api("/v1/admin/users")).data;
      const rows = I.clear($("user-rows"));
      for (const u of users) {
        const toggle = el("button", { type: "button", class: "btn btn-ghost btn-xs" }, u.disabled ? t("admin.enable") : t("admin.disable"));
        toggle.addEventListener("click", function () {
          guarded(async function () {
            await I.api("/v1/admin/users/" + encodeURIComponent(u.id), { method: "PATCH", json: { disabled: !u.disabled } });
            loadUsers();
          });
        });
        rows.append(el("tr", {}, el("td", {}, el("strong", {}, u.name)), cell(u.display_name),
          el("td", {}, badge(u.role, u.role === "admin" ? "accent" : "muted")),
          el("td", {}, u.disabled ? badge(t("admin.disabled"), "warn") : badge(t("admin.active"), "ok")),
          el("td", { class: "row-actions" }, toggle)));
      }
      for (const id of ["member-user", "key-user"]) {
        const sel = I.clear($(id));
        if (id === "key-user") sel.append(el("option", { value: "" }, t("admin.no_user")));
        for (const u of users) sel.append(el("option", { value: u.id }, u.name));
      }
    });
  }
  $("user-form").addEventListener("submit", function (e) {
    e.preventDefault();
    guarded(async function () {
      await I.api("/v1/admin/users", { method: "POST", json: { name: $("user-name").value.trim(),
        display_name: $("user-display").value.trim() || null, role: $("user-role").value } });
      $("user-form").reset();
      I.toast(t("admin.saved"), "ok");
      loadUsers();
    });
  });
  loaders.users = loadUsers;

  async function loadGroups() {
    await guarded(async function () {
      if (!users.length) await loadUsers();
      const groups = (await I.api("/v1/admin/groups")).data;
      const sel = I.clear($("member-group"));
      for (const g of groups) sel.append(el("option", { value: g.id }, g.name));
      const box = I.clear($("group-cards"));
      const details = await Promise.all(groups.map(function (g) { return I.api("/v1/admin/groups/" + encodeURIComponent(g.id)); }));
      for (const g of details) {
        const members = el("ul", { class: "member-list" });
        for (const m of g.members) {
          members.append(el("li", { class: "member" }, el("span", {}, m.name), el("button", { type: "button",
            class: "btn btn-ghost btn-xs", "aria-label": t("admin.remove_member", { user: m.name, group: g.name }),
            onclick: function () {
              guarded(async function () {
                await I.api("/v1/admin/groups/" + encodeURIComponent(g.id) + "/members/" + encodeURIComponent(m.id), { method: "DELETE" });
                loadGroups();
              });
            } }, "×")));
        }
        if (!g.members.length) members.append(el("li", { class: "muted small" }, t("admin.no_members")));
        box.append(el("div", { class: "group-card" }, el("h3", { class: "small-title" }, g.name), members));
      }
    });
  }
  $("group-form").addEventListener("submit", function (e) {
    e.preventDefault();
    guarded(async function () {
      await I.api("/v1/admin/groups", { method: "POST", json: { name: $("group-name").value.trim() } });
      $("group-form").reset();
      loadGroups();
    });
  });
  $("member-form").addEventListener("submit", function (e) {
    e.preventDefault();
    guarded(async function () {
      await I.api("/v1/admin/groups/" + encodeURIComponent($("member-group").value) + "/members/"
        + encodeURIComponent($("member-user").value), { method: "PUT" });
      loadGroups();
    });
  });
  loaders.groups = loadGroups;

  async function loadKeys() {
    await guarded(async function () {
      if (!users.length) await loadUsers();
      const names = {};
      for (const u of users) names[u.id] = u.name;
      const keys = (await I.api("/v1/admin/keys")).data;
      const rows = I.clear($("key-rows"));
      for (const k of keys) {
        const revoked = !!k.revoked_at;
        const action = revoked ? null : el("button", { type: "button", class: "btn btn-ghost btn-xs btn-danger-text",
          onclick: function () {
            guarded(async function () {
              await I.api("/v1/admin/keys/" + encodeURIComponent(k.id), { method: "DELETE" });
              loadKeys();
            });
          } }, t("admin.revoke"));
        rows.append(el("tr", {}, el("td", {}, el("strong", {}, k.name)), cell(k.id, "mono small"),
          cell(k.user_id ? names[k.user_id] || k.user_id : null), el("td", {}, badge(k.role, k.role === "admin" ? "accent" : "muted")),
          el("td", {}, revoked ? badge(t("admin.revoked"), "warn") : badge(t("admin.active"), "ok")),
          cell(k.last_used_at ? I.fmtTime(k.last_used_at) : null, "small nowrap"), el("td", { class: "row-actions" }, action)));
      }
    });
  }
  $("key-form").addEventListener("submit", function (e) {
    e.preventDefault();
    guarded(async function () {
      const body = { name: $("key-name").value.trim(), user_id: $("key-user").value || null };
      if ($("key-role").value) body.role = $("key-role").value;
      const created = await I.api("/v1/admin/keys", { method: "POST", json: body });
      $("key-form").reset();
      $("secret-value").value = created.secret; // shown once, never stored by the page
      $("secret-dialog").showModal();
      loadKeys();
    });
  });
  $("secret-copy").addEventListener("click", function () { I.copyText($("secret-value").value); });
  $("secret-dialog").addEventListener("close", function () { $("secret-value").value = ""; });
  loaders.keys = loadKeys;

  /* -- policies: the egress evidence from the audit report ------------------------------------------ */

  async function loadPolicies() {
    await guarded(async function () {
      const report = await I.api("/v1/admin/audit/report?since=30d");
      const box = I.clear($("policy-body"));
      const sent = report.confidential_sent_out || {};
      const count = typeof sent === "number" ? sent : (sent.count !== undefined ? sent.count : 0);
      const stat = function (label, value, kind) {
        return el("div", { class: "stat" + (kind ? " stat-" + kind : "") }, el("div", { class: "stat-value" }, String(value)),
          el("div", { class: "stat-label" }, label));
      };
      const req = report.requests || {};
      box.append(el("div", { class: "stats" },
        stat(t("admin.requests_30d"), req.total || 0),
        stat(t("admin.confidential_out"), count, count ? "bad" : "good"),
        stat(t("admin.chain"), report.integrity && report.integrity.ok ? t("admin.chain_ok") : t("admin.chain_broken"),
          report.integrity && report.integrity.ok ? "good" : "bad")));
      const dl = el("dl", { class: "kv" });
      for (const [dest, n] of Object.entries(req.by_destination || {})) dl.append(el("dt", {}, dest), el("dd", {}, String(n)));
      for (const [label, n] of Object.entries(req.external_by_label || {})) {
        dl.append(el("dt", {}, t("admin.external_label", { label: label })), el("dd", {}, String(n)));
      }
      box.append(el("h3", { class: "small-title" }, t("admin.by_destination")), dl);
      box.append(el("p", { class: "muted small" }, t("admin.policy_file_note")));
    });
  }
  loaders.policies = loadPolicies;

  /* -- audit ---------------------------------------------------------------------------------------- */

  let auditAfter = 0;
  async function loadAudit(more) {
    await guarded(async function () {
      const params = new URLSearchParams();
      for (const [name, id] of [["since", "audit-since"], ["kind", "audit-kind"], ["action", "audit-action"], ["actor", "audit-actor"],
        ["document", "audit-document"]]) {
        const v = $(id).value.trim();
        if (v) params.set(name, v);
      }
      params.set("limit", "100");
      if (more) params.set("after_seq", String(auditAfter));
      const body = await I.api("/v1/admin/audit?" + params.toString());
      const rows = more ? $("audit-rows") : I.clear($("audit-rows"));
      for (const r of body.data) {
        const ok = r.outcome === "success" || r.outcome === "allowed" || r.outcome === "started";
        rows.append(el("tr", {}, cell(String(r.seq), "mono small"), cell(I.fmtTime(r.ts), "small nowrap"), cell(r.kind, "small"),
          cell(r.action, "mono small"), cell(r.actor_key_id, "mono small"), cell(r.resource, "small"),
          cell(r.location ? r.location + (r.model ? " · " + r.model : "") : null, "small"),
          el("td", {}, badge(r.outcome + (r.reason ? " · " + r.reason : ""), ok ? "ok" : "warn"))));
      }
      if (!rows.children.length) rows.append(el("tr", {}, el("td", { colspan: "8", class: "muted" }, t("admin.no_records"))));
      auditAfter = body.next_after_seq || 0;
      $("audit-more").hidden = !body.next_after_seq;
    });
  }
  $("audit-form").addEventListener("submit", function (e) { e.preventDefault(); loadAudit(false); });
  $("audit-more").addEventListener("click", function () { loadAudit(true); });
  $("audit-verify").addEventListener("click", function () {
    guarded(async function () {
      const r = await I.api("/v1/admin/audit/verify", { method: "POST" });
      const box = $("verify-result");
      box.hidden = false;
      box.className = "banner " + (r.ok ? "banner-ok" : "banner-error");
      box.textContent = r.ok ? t("admin.verify_ok", { n: r.records })
        : t("admin.verify_bad", { seq: r.first_broken_seq, message: r.message || r.kind || "" });
    });
  });
  loaders.audit = function () { loadAudit(false); };
  // /admin?document=doc_… (the documents page's "Audit" link): who touched that document, over all time.
  const askedDocument = new URLSearchParams(window.location.search).get("document");
  if (askedDocument) {
    $("audit-document").value = askedDocument;
    $("audit-since").value = "";
    selectTab($("tab-audit"));
  }

  loadModels();
  pollMetrics();
  setInterval(pollMetrics, POLL_MS);
})();
