/* Assistants page, outline screen: pasted text or an uploaded document (any format the knowledge base parses) →
 * POST /v1/apps/outline → the outline as nested lists (section numbers, titles, pages, key points). Built with
 * inhouse.el (text nodes only): a heading or key point from a document or the model can never become markup. */
(function () {
  "use strict";
  const I = window.inhouse;
  if (!I || !I.signedIn) return;
  const el = I.el;
  const ACCEPT = ".md,.markdown,.txt,.docx,.doc,.wps,.rtf,.odt,.pdf,.pptx,.ppt,.dps,.odp,.xlsx,.xls,.et,.ods,.html,.htm,.csv,.eml,.msg";

  (I.screens = I.screens || {}).outline = function (body) {
    const text = el("textarea", { id: "outline-text", class: "input", rows: 6, required: true,
      placeholder: I.t("outline.text_example") });
    const file = el("input", { id: "outline-file", type: "file", accept: ACCEPT, "aria-describedby": "outline-file-hint" });
    const clear = el("button", { id: "outline-file-clear", class: "btn btn-ghost btn-xs", type: "button", hidden: true },
      I.t("outline.file_clear"));
    const points = el("input", { id: "outline-points", type: "checkbox", checked: true });
    const go = el("button", { id: "outline-go", class: "btn btn-primary", type: "submit" }, I.t("outline.generate"));
    const status = el("p", { id: "outline-status", class: "muted small", role: "status" });
    const out = el("div", { id: "outline-result" });
    function chosen() { return file.files && file.files[0] ? file.files[0] : null; }
    function sync() { // a chosen document replaces the pasted text
      text.required = !chosen();
      clear.hidden = !chosen();
    }
    file.addEventListener("change", sync);
    clear.addEventListener("click", function () { file.value = ""; sync(); file.focus(); });
    sync();
    const form = el("form", { id: "outline-form" },
      el("label", { class: "field-label", for: "outline-text" }, I.t("outline.text")), text,
      el("div", { class: "audio-row" },
        el("label", { class: "inline-field" }, el("span", {}, I.t("outline.file")), file), clear),
      el("p", { id: "outline-file-hint", class: "hint" }, I.t("outline.file_hint")),
      el("p", {}, el("label", { class: "inline-field" }, points, el("span", {}, I.t("outline.key_points")))),
      el("p", { class: "form-actions" }, go), status);

    let last = null; // builds the request behind the shown outline again, for the Markdown download
    function request() {
      const f = chosen();
      const withPoints = points.checked;
      if (f) {
        return function () {
          const fd = new FormData();
          fd.append("file", f, f.name);
          fd.append("filename", f.name);
          fd.append("key_points", withPoints ? "true" : "false");
          return fd;
        };
      }
      const req = { text: text.value, filename: "document.md", key_points: withPoints };
      return function () { return req; };
    }
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const make = request();
      go.disabled = true;
      status.textContent = I.t("outline.working");
      I.clear(out);
      try {
        const outline = await I.send("/v1/apps/outline", make(), {
          onProgress: chosen() ? function (f, done) {
            status.textContent = done ? I.t("outline.working") : I.t("minutes.uploading", { pct: Math.round(f * 100) });
          } : null });
        last = make;
        status.textContent = "";
        out.append(render(outline));
      } catch (e) {
        status.textContent = e.message || I.t("common.network_error");
      } finally {
        go.disabled = false;
      }
    });

    function render(o) {
      const src = o.source || {};
      const meta = [o.filename, o.page_count ? I.t("outline.pages", { n: o.page_count }) : null,
        I.t("outline.sections", { n: src.sections || 0 })].filter(Boolean).join(" · ");
      const box = el("section", { class: "outline", "aria-live": "polite", "aria-labelledby": "outline-title" },
        el("h3", { class: "section-title", id: "outline-title" }, o.title || o.filename || ""),
        el("p", { class: "muted small", id: "outline-meta" }, meta));
      if (src.failed_sections) {
        box.append(el("p", { class: "banner banner-warn small" }, I.t("outline.failed", { n: src.failed_sections })));
      }
      box.append(list(o.sections || [], true));
      box.append(el("p", { class: "row-actions" },
        el("button", { type: "button", class: "btn btn-secondary btn-sm", id: "outline-md", onclick: download },
          I.t("minutes.download_md"))));
      return box;
    }

    function list(sections, top) {
      const ol = el("ol", { class: "outline-list", id: top ? "outline-tree" : null });
      for (const s of sections) {
        const head = el("div", { class: "outline-head" },
          el("span", { class: "outline-ref" }, s.ref), " ",
          el("span", { class: "outline-name" }, s.title),
          s.page !== null && s.page !== undefined ? el("span", { class: "muted small" }, " · " + I.t("outline.page", { n: s.page })) : null);
        const li = el("li", { "data-ref": s.ref }, head);
        if (s.key_points && s.key_points.length) {
          li.append(el("ul", { class: "outline-points", "aria-label": I.t("outline.points_of", { ref: s.ref }) },
            s.key_points.map(function (p) { return el("li", {}, p); })));
        }
        if (s.children && s.children.length) li.append(list(s.children, false));
        ol.append(li);
      }
      return ol;
    }

    async function download() {
      if (!last) return;
      try {
        I.saveBlob(await I.send("/v1/apps/outline?format=md", last(), { blob: true }), "outline.md");
      } catch (e) {
        I.toast(e.message || I.t("common.network_error"), "warn");
      }
    }
    body.append(form, out);
  };
})();
