/* Assistants page, customer-service widget preview: the real widget, framed in a stand-in customer page
 * (/assistants/widget-preview), so an administrator sees and uses exactly what customers get. It runs with the
 * signed-in key against the chosen collection; each preview starts a new support session. After every reply the
 * session is read back from GET /v1/apps/support/sessions/{id}, and its state is shown here: answering, or handed
 * over to a person (with the reason and the summary the agent reads). Admins also get the embed snippet. */
(function () {
  "use strict";
  const I = window.inhouse;
  if (!I || !I.signedIn) return;
  const el = I.el;
  const SESSION_KEY = "inhouse-support-session:" + location.origin; // where widget.js keeps its session id
  const REASONS = ["human_requested", "safety", "refund_threshold", "no_answer"];

  (I.screens = I.screens || {}).support = function (body) {
    const collection = el("select", { id: "support-collection", class: "select" });
    const title = el("input", { id: "support-title", class: "input", type: "text", maxlength: 80, value: I.t("support.default_title") });
    const restart = el("button", { id: "support-restart", class: "btn btn-secondary btn-sm", type: "submit" }, I.t("support.restart"));
    const state = el("div", { id: "support-state", class: "support-state", role: "status", "aria-live": "polite" });
    const frame = el("iframe", { id: "support-frame", class: "support-frame", title: I.t("support.frame_title") });
    const snippet = el("code", { id: "support-snippet" });
    const copy = el("button", { type: "button", class: "btn btn-ghost btn-xs", id: "support-copy" }, I.t("common.copy"));
    const settings = el("form", { id: "support-form", class: "sched-form" },
      I.field(I.t("support.collection"), collection), I.field(I.t("support.title"), title),
      el("p", { class: "form-actions" }, restart));
    const embed = el("div", { class: "support-embed", hidden: !I.isAdmin() },
      el("h4", { class: "small-title" }, I.t("support.embed")),
      el("p", { class: "hint" }, I.t("support.embed_hint")),
      el("pre", { class: "snippet" }, snippet), el("p", {}, copy));
    copy.addEventListener("click", function () { I.copyText(snippet.textContent); });
    body.append(el("div", { class: "support-layout" },
      el("div", { class: "support-side" }, settings,
        el("h4", { class: "small-title" }, I.t("support.state")), state, embed),
      el("div", { class: "support-preview" }, frame)));
    setState("idle");

    settings.addEventListener("submit", function (event) { event.preventDefault(); load(); });
    collection.addEventListener("change", load);
    window.addEventListener("message", function (event) {
      if (event.origin !== location.origin || event.source !== frame.contentWindow) return;
      const msg = event.data || {};
      if (msg.type !== "inhouse-support-preview") return;
      if (msg.event === "reply" && msg.reply && msg.reply.session_id) refresh(msg.reply);
      else if (msg.event === "error") setState("error", { message: I.t("support.error_" + (msg.code === "signed_out" ? "signed_out" : "widget")) });
    });
    collections();

    async function collections() {
      let names = [];
      try {
        names = (await I.api("/v1/collections")).data.map(function (c) { return c.name; });
      } catch (e) {
        setState("error", { message: e.message || I.t("common.network_error") });
      }
      I.clear(collection);
      for (const n of names) collection.append(el("option", { value: n }, n));
      if (!names.length) {
        collection.append(el("option", { value: "" }, I.t("support.no_collections")));
        collection.disabled = true;
        restart.disabled = true;
        setState("error", { message: I.t("support.no_collections") });
        return;
      }
      collection.value = names.indexOf("support") >= 0 ? "support" : names[0];
      load();
    }

    function load() {
      if (!collection.value) return;
      sessionStorage.removeItem(SESSION_KEY); // every preview is a new conversation
      const q = new URLSearchParams({ collections: collection.value, title: title.value.trim() || I.t("support.default_title") });
      frame.src = "/assistants/widget-preview?" + q.toString();
      // Attribute values escaped: the snippet is pasted into another site's HTML, where a quote in a title or a
      // collection name would end the attribute.
      const attr = (v) => String(v).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
      snippet.textContent = '<script src="' + attr(location.origin) + '/widget.js" data-key="' + attr(I.t("support.snippet_key")) +
        '" data-collections="' + attr(collection.value) + '" data-title="' + attr(title.value.trim() || I.t("support.default_title")) + '" async></script>';
      setState("idle");
    }

    async function refresh(reply) {
      try {
        const s = await I.api("/v1/apps/support/sessions/" + encodeURIComponent(reply.session_id));
        const details = s.handoff_details || {};
        setState(s.status === "handed_over" ? "handoff" : "open", {
          messages: (s.messages || []).length, reason: details.reason, summary: details.summary, id: s.id });
      } catch (e) {
        setState(reply.handoff ? "handoff" : "open", { reason: reply.reason, id: reply.session_id });
      }
    }

    function setState(kind, info) {
      const d = info || {};
      I.clear(state);
      state.dataset.state = kind;
      const badges = { idle: ["badge-muted", "support.state_idle"], open: ["badge-ok", "support.state_open"],
        handoff: ["badge-warn", "support.state_handoff"], error: ["badge-warn", "support.state_error"] };
      const b = badges[kind];
      state.append(el("p", {}, el("span", { class: "badge " + b[0], id: "support-badge" }, I.t(b[1]))));
      if (kind === "idle") state.append(el("p", { class: "muted small" }, I.t("support.idle_hint")));
      if (kind === "error") state.append(el("p", { class: "form-error small" }, d.message || ""));
      if (kind === "open") state.append(el("p", { class: "muted small" }, I.t("support.open_hint", { n: d.messages || 0 })));
      if (kind === "handoff") {
        const reason = REASONS.indexOf(d.reason) >= 0 ? I.t("support.reason_" + d.reason) : (d.reason || "—");
        state.append(el("p", { class: "banner banner-warn small", id: "support-handoff" }, I.t("support.handoff_note", { reason: reason })));
        if (d.summary) {
          state.append(el("p", { class: "small-title" }, I.t("support.agent_summary")),
            el("blockquote", { class: "support-summary small", id: "support-summary" }, d.summary));
        }
      }
      if (d.id) state.append(el("p", { class: "muted small mono" }, d.id));
    }
  };
})();
