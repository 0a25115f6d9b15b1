/* Assistants page: which assistants this server offers. The server marks a card available when its API
 * routes (/v1/apps/<name>…) are registered; the others say they are coming. Each available assistant gets its
 * screen: this file holds the shared helpers and the minutes screen (transcript or recording in, verified minutes
 * out); assistant-outline.js, assistant-schedule.js and assistant-support.js register theirs in
 * `inhouse.screens`. Everything from the server is set as text, never as HTML. */
(function () {
  "use strict";
  const I = window.inhouse;
  if (!I || !I.signedIn) return;
  const el = I.el;
  const screens = (I.screens = I.screens || {});

  /* -- shared helpers ------------------------------------------------------------------------------- */

  I.zone = function () {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || null; } catch (e) { return null; }
  };

  // POST a FormData (or a JSON value) with the signed-in key through XHR, for its upload progress.
  // Resolves with the parsed JSON, or a Blob with {blob: true}; rejects with I.ApiError (the server's message).
  I.send = function (path, body, opts) {
    const options = opts || {};
    return new Promise(function (resolve, reject) {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      xhr.setRequestHeader("Authorization", "Bearer " + I.key());
      xhr.responseType = "blob";
      if (options.onProgress) {
        xhr.upload.addEventListener("progress", function (e) {
          if (e.lengthComputable) options.onProgress(e.loaded / e.total, false);
        });
        xhr.upload.addEventListener("load", function () { options.onProgress(1, true); });
      }
      xhr.addEventListener("load", async function () {
        const blob = xhr.response || new Blob([]);
        if (xhr.status >= 200 && xhr.status < 300) {
          if (options.blob) { resolve(blob); return; }
          try { resolve(JSON.parse(await blob.text())); } catch (e) { reject(new I.ApiError(xhr.status, I.t("common.network_error"), null)); }
          return;
        }
        let message = xhr.status + " " + xhr.statusText;
        let code = null;
        try {
          const err = JSON.parse(await blob.text()).error;
          if (err) { message = err.message || message; code = err.code || null; }
        } catch (e) { /* not JSON: keep the status line */ }
        if (xhr.status === 401) I.signOut();
        reject(new I.ApiError(xhr.status, message, code));
      });
      xhr.addEventListener("error", function () { reject(new I.ApiError(0, I.t("common.network_error"), null)); });
      if (body instanceof FormData) {
        xhr.send(body);
      } else {
        xhr.setRequestHeader("Content-Type", "application/json");
        xhr.send(JSON.stringify(body));
      }
    });
  };

  I.saveBlob = function (blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  };

  // A labelled form field: <label class="field-label" for=id>text</label> + control.
  I.field = function (label, control, extraClass) {
    return el("div", { class: "field" + (extraClass ? " " + extraClass : "") },
      el("label", { class: "field-label", for: control.id }, label), control);
  };

  /* -- the cards ------------------------------------------------------------------------------------ */

  // Every deferred script (the screens included) has run when DOMContentLoaded fires.
  document.addEventListener("DOMContentLoaded", function () {
    for (const card of document.querySelectorAll("[data-assistant]")) {
      if (card.dataset.available !== "1") continue;
      const badge = card.querySelector("[data-state]");
      badge.textContent = I.t("assist.api_ready");
      badge.className = "badge badge-ok";
      const body = card.querySelector("[data-body]");
      const screen = screens[card.dataset.assistant];
      if (screen) { card.classList.add("is-wide"); screen(body, card); }
      else body.append(el("p", { class: "muted small" }, I.t("assist.api_at", { path: "/v1/apps/" + card.dataset.assistant })));
    }
  });

  /* -- minutes -------------------------------------------------------------------------------------- */

  const AUDIO_ACCEPT = "audio/*,.wav,.mp3,.m4a,.ogg,.oga,.flac,.webm,.aac,.opus";

  screens.minutes = function (body) {
    const text = el("textarea", { id: "minutes-text", class: "input", rows: 6, required: true });
    const file = el("input", { id: "minutes-file", type: "file", accept: ".txt,.vtt,.srt,text/plain" });
    const audio = el("input", { id: "minutes-audio", type: "file", accept: AUDIO_ACCEPT, "aria-describedby": "minutes-audio-hint" });
    const audioClear = el("button", { id: "minutes-audio-clear", class: "btn btn-ghost btn-xs", type: "button", hidden: true },
      I.t("minutes.audio_clear"));
    const lang = el("select", { id: "minutes-lang", class: "select" },
      el("option", { value: "" }, I.t("minutes.lang_auto")), el("option", { value: "en" }, "English"),
      el("option", { value: "zh" }, "中文"));
    const attendees = el("input", { id: "minutes-attendees", class: "input", type: "text", maxlength: 2000,
      placeholder: I.t("minutes.attendees_example"), autocomplete: "off" });
    const date = el("input", { id: "minutes-date", class: "input input-sm", type: "date" });
    const go = el("button", { id: "minutes-go", class: "btn btn-primary", type: "submit" }, I.t("minutes.generate"));
    const progress = el("progress", { id: "minutes-progress", max: "100", value: "0", hidden: true,
      "aria-label": I.t("minutes.upload_progress") });
    const status = el("p", { id: "minutes-status", class: "muted small", role: "status" });
    const out = el("div", { id: "minutes-result" });
    file.addEventListener("change", function () { // a transcript file fills the box (the user can still edit it)
      const f = file.files && file.files[0];
      if (f) f.text().then(function (s) { text.value = s; });
    });
    function audioChosen() { return !!(audio.files && audio.files[0]); }
    function syncAudio() { // a recording replaces the typed transcript
      const on = audioChosen();
      text.required = !on;
      audioClear.hidden = !on;
      lang.disabled = !on;
    }
    audio.addEventListener("change", syncAudio);
    audioClear.addEventListener("click", function () { audio.value = ""; syncAudio(); audio.focus(); });
    syncAudio();
    const form = el("form", { id: "minutes-form" },
      el("label", { class: "field-label", for: "minutes-text" }, I.t("minutes.transcript")), text,
      el("label", { class: "inline-field" }, el("span", {}, I.t("minutes.file")), file),
      el("div", { class: "audio-row" },
        el("label", { class: "inline-field" }, el("span", {}, I.t("minutes.audio")), audio), audioClear,
        el("label", { class: "inline-field" }, el("span", {}, I.t("minutes.lang")), lang)),
      el("p", { id: "minutes-audio-hint", class: "hint" }, I.t("minutes.audio_hint")),
      el("div", { class: "form-row" },
        I.field(I.t("minutes.attendees"), attendees, "field-grow"),
        I.field(I.t("minutes.date"), date)),
      el("p", { class: "form-actions" }, go, progress), status);

    let last = null; // the request behind the shown minutes, reused for the downloads
    function request() {
      const zone = I.zone();
      const names = attendees.value.split(/[,，、]/).map(function (s) { return s.trim(); }).filter(Boolean);
      if (audioChosen()) {
        const f = audio.files[0];
        return function () { // a FormData is consumed by each send: build a new one every time
          const fd = new FormData();
          fd.append("file", f, f.name);
          fd.append("filename", f.name);
          if (date.value) fd.append("meeting_date", date.value);
          if (names.length) fd.append("attendees", names.join(","));
          if (zone) fd.append("timezone", zone);
          if (lang.value) fd.append("language", lang.value);
          return fd;
        };
      }
      const req = { text: text.value, filename: (file.files && file.files[0] && file.files[0].name) || "transcript.txt" };
      if (date.value) req.meeting_date = date.value;
      if (names.length) req.attendees = names;
      if (zone) req.timezone = zone;
      return function () { return req; };
    }
    function onProgress(fraction, done) {
      progress.hidden = false;
      progress.value = Math.round(fraction * 100);
      status.textContent = done ? I.t("minutes.transcribing") : I.t("minutes.uploading", { pct: Math.round(fraction * 100) });
    }
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const make = request();
      const isAudio = audioChosen();
      go.disabled = true;
      status.textContent = isAudio ? I.t("minutes.uploading", { pct: 0 }) : I.t("minutes.working");
      I.clear(out);
      try {
        const minutes = await I.send("/v1/apps/minutes", make(), { onProgress: isAudio ? onProgress : null });
        last = { make: make, audio: isAudio };
        status.textContent = "";
        out.append(render(minutes, function (fmt) { download(last, fmt); }));
      } catch (e) {
        status.textContent = e.message || I.t("common.network_error");
      } finally {
        go.disabled = false;
        progress.hidden = true;
      }
    });
    async function download(req, fmt) {
      // A recording is uploaded (and transcribed) again: the server keeps nothing between requests.
      if (req.audio) status.textContent = I.t("minutes.uploading", { pct: 0 });
      try {
        const blob = await I.send("/v1/apps/minutes?format=" + fmt, req.make(), { blob: true, onProgress: req.audio ? onProgress : null });
        I.saveBlob(blob, "minutes." + fmt);
      } catch (e) {
        I.toast(e.message || I.t("common.network_error"), "warn");
      } finally {
        if (req.audio) { status.textContent = ""; progress.hidden = true; }
      }
    }
    body.append(form, out);
  };

  function lines(evidence) {
    return (evidence || []).map(function (ev) { return "L" + ev.line + (ev.timestamp ? " " + ev.timestamp : ""); }).join(", ");
  }

  function render(m, onDownload) {
    const box = el("section", { class: "minutes", "aria-live": "polite" },
      el("h3", { class: "section-title", id: "minutes-title" }, m.title || ""),
      m.meeting_date ? el("p", { class: "muted small" }, m.meeting_date) : null,
      m.source && m.source.format === "audio" ? el("p", { class: "muted small", id: "minutes-from-audio" }, I.t("minutes.from_audio")) : null,
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
