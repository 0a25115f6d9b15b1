/* Assistants page: which assistants this server offers. The server marks a card available when its API
 * routes (/v1/apps/<name>…) are registered; the others say they are coming. The minutes card has its own
 * screen: transcript in, verified minutes out (everything from the server is set as text, never as HTML). */
(function () {
  "use strict";
  const I = window.inhouse;
  if (!I || !I.signedIn) return;
  const el = I.el;
  for (const card of document.querySelectorAll("[data-assistant]")) {
    if (card.dataset.available !== "1") continue;
    const badge = card.querySelector("[data-state]");
    badge.textContent = I.t("assist.api_ready");
    badge.className = "badge badge-ok";
    const body = card.querySelector("[data-body]");
    if (card.dataset.assistant === "minutes") { card.classList.add("is-wide"); minutesScreen(body); }
    else body.append(el("p", { class: "muted small" }, I.t("assist.api_at", { path: "/v1/apps/" + card.dataset.assistant })));
  }

  function minutesScreen(body) {
    const text = el("textarea", { id: "minutes-text", class: "input", rows: 6, required: true });
    const file = el("input", { id: "minutes-file", type: "file", accept: ".txt,.vtt,.srt,text/plain" });
    const date = el("input", { id: "minutes-date", class: "input input-sm", type: "date" });
    const go = el("button", { id: "minutes-go", class: "btn btn-primary", type: "submit" }, I.t("minutes.generate"));
    const status = el("p", { id: "minutes-status", class: "muted small", role: "status" });
    const out = el("div", { id: "minutes-result" });
    file.addEventListener("change", function () { // a transcript file fills the box (the user can still edit it)
      const f = file.files && file.files[0];
      if (f) f.text().then(function (s) { text.value = s; });
    });
    const form = el("form", { id: "minutes-form" },
      el("label", { class: "field-label", for: "minutes-text" }, I.t("minutes.transcript")), text,
      el("label", { class: "inline-field" }, el("span", {}, I.t("minutes.file")), file),
      el("label", { class: "inline-field" }, el("span", {}, I.t("minutes.date")), date),
      el("p", {}, go), status);
    let last = null; // the request behind the shown minutes, reused for the downloads
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const req = { text: text.value, filename: (file.files && file.files[0] && file.files[0].name) || "transcript.txt" };
      if (date.value) req.meeting_date = date.value;
      try { req.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* server default */ }
      go.disabled = true;
      status.textContent = I.t("minutes.working");
      I.clear(out);
      try {
        const minutes = await I.api("/v1/apps/minutes", { method: "POST", json: req });
        last = req;
        status.textContent = "";
        out.append(render(minutes, function (fmt) { download(last, fmt); }));
      } catch (e) {
        status.textContent = e.message || I.t("common.network_error");
      } finally {
        go.disabled = false;
      }
    });
    body.append(form, out);
  }

  async function download(req, fmt) {
    try {
      const resp = await I.api("/v1/apps/minutes?format=" + fmt, { method: "POST", json: req, raw: true });
      const url = URL.createObjectURL(await resp.blob());
      const a = el("a", { href: url, download: "minutes." + fmt, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
    } catch (e) {
      I.toast(e.message || I.t("common.network_error"), "warn");
    }
  }

  function lines(evidence) {
    return (evidence || []).map(function (ev) { return "L" + ev.line; }).join(", ");
  }

  function render(m, onDownload) {
    const box = el("section", { class: "minutes", "aria-live": "polite" },
      el("h3", { class: "section-title", id: "minutes-title" }, m.title || ""),
      m.meeting_date ? el("p", { class: "muted small" }, m.meeting_date) : null,
      el("p", { id: "minutes-summary" }, m.summary || ""));
    box.append(el("h4", {}, I.t("minutes.decisions")));
    if (m.decisions && m.decisions.length) {
      box.append(el("ul", { id: "minutes-decisions" }, m.decisions.map(function (d) {
        return el("li", {}, d.text, " ", el("span", { class: "muted small" }, "(" + lines(d.evidence) + ")"));
      })));
    } else {
      box.append(el("p", { class: "muted small" }, I.t("minutes.none")));
    }
    box.append(el("h4", {}, I.t("minutes.actions")));
    const items = m.action_items || [];
    if (items.length) {
      const head = el("tr", {}, ["minutes.owner", "minutes.task", "minutes.due", "minutes.evidence"].map(function (k) {
        return el("th", { scope: "col" }, I.t(k));
      }));
      const rows = items.map(function (a) {
        return el("tr", {}, el("td", {}, a.owner || "—"), el("td", {}, a.task),
          el("td", {}, a.due || a.due_text || "—"), el("td", {}, lines(a.evidence)));
      });
      box.append(el("div", { class: "table-wrap" },
        el("table", { class: "table table-compact", id: "minutes-actions" }, el("thead", {}, head), el("tbody", {}, rows))));
    } else {
      box.append(el("p", { class: "muted small" }, I.t("minutes.none")));
    }
    box.append(el("p", { class: "row-actions" },
      el("button", { type: "button", class: "btn btn-secondary btn-sm", id: "minutes-md", onclick: function () { onDownload("md"); } },
        I.t("minutes.download_md")),
      el("button", { type: "button", class: "btn btn-secondary btn-sm", id: "minutes-ics", onclick: function () { onDownload("ics"); } },
        I.t("minutes.download_ics"))));
    return box;
  }
})();
