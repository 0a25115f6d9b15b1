/* Documents page: the collections the caller may see, their documents (label, access list, ingestion status),
 * multi-file upload with progress (drag and drop or file picker; XHR for upload progress), relabel, delete,
 * search, and (admins) new collections. */
(function () {
  "use strict";
  const I = window.inhouse;
  if (!I || !I.signedIn) return;
  const t = I.t;
  const el = I.el;
  const $ = I.byId;
  const state = { collections: [], current: null, docs: [], editing: null, queue: [], uploading: false };

  function groupsOf(text) {
    return text.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
  }

  function colPath(suffix) {
    return "/v1/collections/" + encodeURIComponent(state.current.id) + (suffix || "");
  }

  /* -- collections ---------------------------------------------------------------------------------- */

  async function loadCollections(selectId) {
    try {
      state.collections = (await I.api("/v1/collections")).data;
    } catch (e) {
      state.collections = [];
      I.toast(e.message, "error");
    }
    const list = I.clear($("collection-list"));
    $("collections-empty").hidden = state.collections.length > 0;
    for (const c of state.collections) {
      const current = state.current && state.current.id === c.id;
      list.append(el("li", {}, el("button", { type: "button", class: "collection-item", "aria-current": current ? "true" : null,
        "data-collection": c.name, onclick: function () { selectCollection(c.id); } },
      el("span", { class: "collection-name" }, c.name),
      el("span", { class: "badge badge-muted" }, String(c.document_count)))));
    }
    const wanted = selectId || (state.current && state.current.id) || (state.collections[0] && state.collections[0].id);
    if (wanted) selectCollection(wanted);
    else document.querySelector(".docs-main").hidden = true;
  }

  async function selectCollection(id) {
    state.current = state.collections.find(function (c) { return c.id === id; }) || null;
    if (!state.current) return;
    for (const b of document.querySelectorAll(".collection-item")) {
      b.setAttribute("aria-current", b.dataset.collection === state.current.name ? "true" : "false");
    }
    $("collection-name").textContent = state.current.name;
    const groups = state.current.access.groups.length ? state.current.access.groups.join(", ") : t("docs.admins_only");
    $("collection-meta").textContent = (state.current.description ? state.current.description + " · " : "")
      + t("docs.access") + ": " + groups + (state.current.sketch_questions ? " · " + t("docs.sketch_on") : "");
    $("search-results").hidden = true;
    await loadDocuments();
  }

  async function loadDocuments() {
    try {
      state.docs = (await I.api(colPath("/documents"))).data;
    } catch (e) {
      state.docs = [];
      I.toast(e.message, "error");
    }
    renderDocuments();
  }

  function labelBadge(label) {
    return el("span", { class: "badge badge-label badge-" + label }, t("label." + label));
  }

  // Why a document carries its label: its own marking (a Purview label, CONFIDENTIAL in its title...), and the more
  // sensitive document its text was taken from (kb/derived.py), when it has them.
  function labelReasons(m) {
    const reasons = [];
    if (m.marking) reasons.push(t("docs.marked", { label: t("label." + m.marking_label), reason: m.marking }));
    if (m.derived_label) reasons.push(t("docs.derived", { label: t("label." + m.derived_label) }));
    return reasons;
  }

  function markedNote(d) {
    const reasons = labelReasons(d.metadata || {});
    if (!reasons.length) return null;
    return el("div", { class: "muted small doc-marking" }, reasons.join(" · "));
  }

  function renderDocuments() {
    const rows = I.clear($("doc-rows"));
    $("docs-empty").hidden = state.docs.length > 0;
    for (const d of state.docs) {
      const access = d.access ? d.access.groups.concat(d.access.keys).join(", ") || t("docs.admins_only") : t("docs.inherits");
      const del = el("button", { type: "button", class: "btn btn-ghost btn-xs btn-danger-text",
        "aria-label": t("docs.delete_doc", { name: d.title || d.filename }) }, t("common.delete"));
      del.addEventListener("click", function () { confirmThen(del, function () { deleteDocument(d); }); });
      rows.append(el("tr", { "data-doc": d.id },
        el("td", {}, el("div", { class: "doc-title" }, d.title || d.filename), el("div", { class: "muted small" }, d.filename)),
        el("td", {}, labelBadge(d.label), markedNote(d)),
        el("td", { class: "small" }, access),
        el("td", {}, el("span", { class: "status status-ok" }, t("docs.indexed", { n: d.chunk_count }))),
        el("td", { class: "small nowrap" }, I.fmtBytes(d.size_bytes)),
        el("td", { class: "row-actions" },
          I.isAdmin() ? el("a", { class: "btn btn-ghost btn-xs", href: "/admin?document=" + encodeURIComponent(d.id),
            "aria-label": t("docs.audit_doc", { name: d.title || d.filename }) }, t("docs.audit")) : null,
          el("button", { type: "button", class: "btn btn-ghost btn-xs", onclick: function () { editDocument(d); },
            "aria-label": t("docs.edit_doc", { name: d.title || d.filename }) }, t("docs.edit")), del)));
    }
  }

  // Two-step delete without a modal: the first press asks, the second (within 4 s) does it.
  function confirmThen(button, action) {
    if (button.dataset.armed) { action(); return; }
    button.dataset.armed = "1";
    const label = button.textContent;
    button.textContent = t("common.confirm_delete");
    setTimeout(function () { delete button.dataset.armed; button.textContent = label; }, 4000);
  }

  async function deleteDocument(d) {
    try {
      await I.api(colPath("/documents/" + encodeURIComponent(d.id)), { method: "DELETE" });
      I.toast(t("docs.deleted", { name: d.title || d.filename }), "ok");
      await loadCollections();
    } catch (e) { I.toast(e.message, "error"); }
  }

  function editDocument(d) {
    state.editing = d;
    $("doc-dialog-name").textContent = d.title || d.filename;
    $("doc-label").value = d.label;
    $("doc-groups").value = d.access ? d.access.groups.join(", ") : "";
    $("doc-dialog").showModal();
  }
  $("doc-cancel").addEventListener("click", function () { $("doc-dialog").close(); });
  $("doc-form").addEventListener("submit", async function (e) {
    e.preventDefault();
    const d = state.editing;
    const groups = groupsOf($("doc-groups").value);
    const body = { label: $("doc-label").value };
    // The access list only when it was changed: only admins may change it, and a member relabelling a document
    // sent an unchanged (or empty) list along and was refused.
    const before = d.access ? d.access.groups : [];
    if (groups.join("\n") !== before.join("\n")) {
      if (groups.length) body.access = { groups: groups };
      else body.clear_access = true;
    }
    try {
      const saved = await I.api(colPath("/documents/" + encodeURIComponent(d.id)), { method: "PATCH", json: body });
      $("doc-dialog").close();
      // Raised above their old label, copies of its text elsewhere are raised with it (kb/derived.py).
      const copies = saved.raised_copies || [];
      I.toast(copies.length ? t("docs.saved_copies", { n: copies.length, label: t("label." + saved.label) })
        : t("docs.saved"), "ok");
      loadDocuments();
    } catch (err) { I.toast(err.message, "error"); }
  });

  /* -- upload --------------------------------------------------------------------------------------- */

  function addFiles(files) {
    if (!state.current) return;
    for (const file of files) {
      const bar = el("progress", { max: "100", value: "0", "aria-label": t("docs.progress", { name: file.name }) });
      const status = el("span", { class: "upload-status" }, t("docs.queued"));
      const row = el("li", { class: "upload" }, el("span", { class: "upload-name" }, file.name),
        el("span", { class: "muted small" }, I.fmtBytes(file.size)), bar, status);
      $("uploads").prepend(row);
      state.queue.push({ file: file, bar: bar, status: status, row: row, collection: state.current.id,
        label: $("upload-label").value, groups: $("upload-groups").value });
    }
    pump();
  }

  // One upload at a time: ingestion (parse, chunk, embed) runs on the server's few cores.
  async function pump() {
    if (state.uploading) return;
    state.uploading = true;
    while (state.queue.length) await upload(state.queue.shift());
    state.uploading = false;
    loadCollections();
  }

  function upload(job) {
    return new Promise(function (resolve) {
      const form = new FormData();
      form.append("file", job.file, job.file.name);
      form.append("label", job.label);
      if (groupsOf(job.groups).length) form.append("groups", groupsOf(job.groups).join(","));
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/v1/collections/" + encodeURIComponent(job.collection) + "/documents");
      xhr.setRequestHeader("Authorization", "Bearer " + I.key());
      xhr.responseType = "json";
      job.status.textContent = t("docs.uploading");
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) job.bar.value = Math.round((e.loaded / e.total) * 100);
      });
      xhr.upload.addEventListener("load", function () {
        job.bar.value = 100;
        job.status.textContent = t("docs.indexing");
        job.row.classList.add("is-indexing");
      });
      xhr.addEventListener("load", function () {
        job.row.classList.remove("is-indexing");
        const body = xhr.response || {};
        if (xhr.status >= 200 && xhr.status < 300) {
          job.row.classList.add("is-done");
          job.status.textContent = t("docs.status_" + (body.status || "added"), { n: body.chunk_count || 0 });
          const m = body.metadata || {};
          if (body.status !== "unchanged") {  // what raised the label chosen for the upload
            if (m.marking && m.marking_label === body.label) {
              job.status.textContent += " · " + t("docs.marked", { label: t("label." + body.label), reason: m.marking });
            }
            if (m.derived_label === body.label) {
              job.status.textContent += " · " + t("docs.derived", { label: t("label." + body.label) });
            }
          }
        } else {
          job.row.classList.add("is-error");
          job.status.textContent = (body.error && body.error.message) || xhr.status + " " + xhr.statusText;
          if (xhr.status === 401) I.signOut();
        }
        resolve();
      });
      xhr.addEventListener("error", function () {
        job.row.classList.add("is-error");
        job.status.textContent = t("common.network_error");
        resolve();
      });
      xhr.send(form);
    });
  }

  const zone = $("dropzone");
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.add("is-over"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.remove("is-over"); });
  });
  zone.addEventListener("drop", function (e) { if (e.dataTransfer) addFiles(Array.from(e.dataTransfer.files)); });
  $("file-input").addEventListener("change", function (e) {
    addFiles(Array.from(e.target.files));
    e.target.value = "";
  });

  /* -- search --------------------------------------------------------------------------------------- */

  $("search-form").addEventListener("submit", async function (e) {
    e.preventDefault();
    const q = $("search-q").value.trim();
    const box = I.clear($("search-results"));
    if (!q || !state.current) { box.hidden = true; return; }
    box.hidden = false;
    try {
      const hits = (await I.api("/v1/search", { method: "POST",
        json: { query: q, collections: [state.current.name], top_k: 5 } })).data;
      box.append(el("h3", { class: "small-title" }, t("docs.results", { n: hits.length })));
      for (const h of hits) {
        box.append(el("div", { class: "hit" },
          el("div", { class: "hit-head" }, el("strong", {}, h.title), labelBadge(h.label),
            h.page_start ? el("span", { class: "muted small" }, t("chat.page", { n: h.page_start })) : null),
          el("p", { class: "hit-text" }, h.text)));
      }
    } catch (err) { box.append(el("p", { class: "form-error" }, err.message)); }
  });

  /* -- new collection (admins) ---------------------------------------------------------------------- */

  const newBtn = $("new-collection");
  newBtn.addEventListener("click", function () { $("collection-dialog").showModal(); });
  $("collection-cancel").addEventListener("click", function () { $("collection-dialog").close(); });
  $("collection-form").addEventListener("submit", async function (e) {
    e.preventDefault();
    try {
      const col = await I.api("/v1/collections", { method: "POST", json: {
        name: $("col-name").value.trim(), description: $("col-desc").value.trim(),
        access: { groups: groupsOf($("col-groups").value) }, sketch_questions: $("col-sketch").checked } });
      $("collection-dialog").close();
      loadCollections(col.id);
    } catch (err) { I.toast(err.message, "error"); }
  });

  loadCollections();
})();
