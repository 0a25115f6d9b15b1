/* Chat page: streamed answers (fetch + ReadableStream SSE), model picker, knowledge with citations,
 * stop (aborts the fetch: the server aborts the generation when the client goes away), history kept on the
 * server (/v1/conversations), copy and regenerate. */
(function () {
  "use strict";
  const I = window.inhouse;
  if (!I || !I.signedIn) return;
  const t = I.t;
  const el = I.el;
  const $ = I.byId;

  const state = {
    conv: null, // {id, title} once saved
    messages: [], // {role, content, citations?, error?, stopped?}
    controller: null,
    collections: [],
  };
  const ui = {
    messages: $("messages"), empty: $("chat-empty"), prompt: $("prompt"), send: $("send"), stop: $("stop"),
    model: $("model"), knowledge: $("knowledge"), picker: $("collection-picker"), options: $("collection-options"),
    history: $("history-list"), historyEmpty: $("history-empty"), panel: $("source-panel"), panelBody: $("source-body"),
  };

  /* -- setup ---------------------------------------------------------------------------------------- */

  async function loadModels() {
    try {
      const body = await I.api("/v1/models");
      const models = body.data.filter(function (m) { return m.present !== false; });
      const saved = localStorage.getItem("inhouse.model");
      I.clear(ui.model);
      for (const m of models) {
        const label = m.id + (m.loaded ? " ●" : "") + (m.external ? " ↗" : "");
        ui.model.append(el("option", { value: m.id }, label));
      }
      // The person's last choice, else the server's default model, else one already in memory.
      let status = null;
      try { status = await I.api("/v1/status"); } catch (e) { status = null; }
      const has = function (id) { return !!id && models.some(function (m) { return m.id === id; }); };
      const loaded = models.find(function (m) { return m.loaded; });
      if (has(saved)) ui.model.value = saved;
      else if (status && has(status.default_model)) ui.model.value = status.default_model;
      else if (loaded) ui.model.value = loaded.id;
    } catch (e) {
      I.toast(e.message, "error");
    }
  }

  async function loadCollections() {
    try {
      const body = await I.api("/v1/collections");
      state.collections = body.data;
    } catch (e) {
      state.collections = []; // no knowledge base on this server
    }
    I.clear(ui.options);
    if (!state.collections.length) {
      ui.options.append(el("span", { class: "muted small" }, t("chat.no_collections")));
    }
    const chosen = JSON.parse(localStorage.getItem("inhouse.collections") || "[]");
    for (const c of state.collections) {
      const id = "col-" + c.id;
      const box = el("input", { type: "checkbox", id: id, value: c.name, class: "chip-check" });
      box.checked = chosen.includes(c.name);
      box.addEventListener("change", saveChoice);
      ui.options.append(el("span", { class: "chip-toggle" }, box, el("label", { for: id, class: "chip" }, c.name)));
    }
    ui.knowledge.checked = localStorage.getItem("inhouse.knowledge") === "1" && state.collections.length > 0;
    ui.knowledge.disabled = state.collections.length === 0;
    ui.picker.hidden = !ui.knowledge.checked;
  }

  function saveChoice() {
    localStorage.setItem("inhouse.collections", JSON.stringify(selectedCollections()));
  }

  function selectedCollections() {
    return Array.from(ui.options.querySelectorAll("input:checked")).map(function (b) { return b.value; });
  }

  ui.knowledge.addEventListener("change", function () {
    ui.picker.hidden = !ui.knowledge.checked;
    localStorage.setItem("inhouse.knowledge", ui.knowledge.checked ? "1" : "0");
  });
  ui.model.addEventListener("change", function () { localStorage.setItem("inhouse.model", ui.model.value); });

  /* -- history -------------------------------------------------------------------------------------- */

  async function loadHistory() {
    let list = [];
    try { list = (await I.api("/v1/conversations")).data; } catch (e) { list = []; }
    I.clear(ui.history);
    ui.historyEmpty.hidden = list.length > 0;
    for (const c of list) {
      const current = state.conv && state.conv.id === c.id;
      const open = el("button", { type: "button", class: "history-item", "aria-current": current ? "true" : null,
        onclick: function () { openConversation(c.id); } },
      el("span", { class: "history-title" }, c.title), el("span", { class: "history-time" }, I.fmtTime(c.updated_at)));
      const del = el("button", { type: "button", class: "btn btn-ghost btn-icon btn-xs history-delete",
        "aria-label": t("chat.delete_conv", { title: c.title }), title: t("common.delete"),
        onclick: function () { deleteConversation(c.id); } }, "×");
      ui.history.append(el("li", { class: "history-row" }, open, del));
    }
  }

  async function openConversation(id) {
    if (state.controller) return;
    try {
      const conv = await I.api("/v1/conversations/" + encodeURIComponent(id));
      state.conv = { id: conv.id, title: conv.title };
      state.messages = conv.messages;
      if (conv.model && Array.from(ui.model.options).some(function (o) { return o.value === conv.model; })) {
        ui.model.value = conv.model;
      }
      renderAll();
      loadHistory();
    } catch (e) { I.toast(e.message, "error"); }
  }

  async function deleteConversation(id) {
    try {
      await I.api("/v1/conversations/" + encodeURIComponent(id), { method: "DELETE" });
      if (state.conv && state.conv.id === id) newChat();
      loadHistory();
    } catch (e) { I.toast(e.message, "error"); }
  }

  async function saveConversation() {
    const messages = state.messages.filter(function (m) { return !m.error; }).map(function (m) {
      const out = { role: m.role, content: m.content };
      if (m.citations && m.citations.length) out.citations = m.citations;
      return out;
    });
    if (!messages.length) return;
    const body = { model: ui.model.value || null, messages: messages };
    try {
      if (state.conv) {
        await I.api("/v1/conversations/" + encodeURIComponent(state.conv.id), { method: "PUT", json: body });
      } else {
        const first = messages.find(function (m) { return m.role === "user"; });
        body.title = first ? first.content.slice(0, 80) : t("chat.new");
        const conv = await I.api("/v1/conversations", { method: "POST", json: body });
        state.conv = { id: conv.id, title: conv.title };
      }
      loadHistory();
    } catch (e) { I.toast(t("chat.save_failed") + " " + e.message, "warn"); }
  }

  function newChat() {
    if (state.controller) state.controller.abort();
    state.conv = null;
    state.messages = [];
    closePanel();
    renderAll();
    loadHistory();
    ui.prompt.focus();
  }
  $("new-chat").addEventListener("click", newChat);

  /* -- rendering ------------------------------------------------------------------------------------ */

  function citeButton(msg) {
    return function (n) {
      const c = (msg.citations || []).find(function (x) { return x.index === n; });
      if (!c) return null;
      return el("button", { type: "button", class: "cite", "aria-label": t("chat.open_source", { n: n, title: c.title }),
        onclick: function () { openSource(c); } }, String(n));
    };
  }

  function renderMessage(msg, index) {
    const isUser = msg.role === "user";
    const body = el("div", { class: "msg-body" });
    if (isUser) body.append(el("p", { class: "user-text" }, msg.content));
    else if (msg.error) body.append(el("p", { class: "msg-error", role: "alert" }, msg.error));
    else if (!msg.content && msg.pending) body.append(el("span", { class: "typing", "aria-label": t("chat.thinking") },
      el("span"), el("span"), el("span")));
    else body.append(I.renderMarkdown(msg.content, { cite: citeButton(msg) }));
    const wrap = el("article", { class: "msg " + (isUser ? "msg-user" : "msg-assistant"), "data-index": index,
      "aria-label": isUser ? t("chat.you") : t("chat.assistant") },
    el("div", { class: "msg-avatar", "aria-hidden": "true" }, isUser ? ((I.actor() || {}).name || "?").slice(0, 1).toUpperCase() : "ih"),
    el("div", { class: "msg-content" }, body));
    const content = wrap.lastChild;
    if (!isUser && msg.stopped) content.append(el("p", { class: "msg-note" }, t("chat.stopped")));
    if (!isUser && msg.citations && msg.citations.length) {
      const list = el("ol", { class: "sources", "aria-label": t("chat.sources") });
      for (const c of msg.citations) {
        list.append(el("li", {}, el("button", { type: "button", class: "source-chip", onclick: function () { openSource(c); } },
          el("span", { class: "source-n" }, String(c.index)), el("span", {}, c.title || c.source_path),
          c.page_start ? el("span", { class: "muted" }, " · " + t("chat.page", { n: c.page_start })) : null)));
      }
      content.append(list);
    }
    if (!isUser && !msg.pending && !msg.error) {
      const last = index === state.messages.length - 1;
      content.append(el("div", { class: "msg-actions" },
        el("button", { type: "button", class: "btn btn-ghost btn-xs", onclick: function () { I.copyText(msg.content); } }, t("common.copy")),
        last ? el("button", { type: "button", class: "btn btn-ghost btn-xs", id: "regenerate", onclick: regenerate }, t("chat.regenerate")) : null));
    }
    if (!isUser && msg.error && index === state.messages.length - 1) {
      content.append(el("div", { class: "msg-actions" },
        el("button", { type: "button", class: "btn btn-ghost btn-xs", onclick: regenerate }, t("chat.retry"))));
    }
    return wrap;
  }

  function renderAll() {
    I.clear(ui.messages);
    if (!state.messages.length) { ui.messages.append(ui.empty); return; }
    state.messages.forEach(function (m, i) { ui.messages.append(renderMessage(m, i)); });
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  let frame = 0;
  function renderLast() {
    // Streaming: re-render only the answer being written, at most once per animation frame.
    if (frame) return;
    frame = requestAnimationFrame(function () {
      frame = 0;
      const index = state.messages.length - 1;
      const old = ui.messages.querySelector('[data-index="' + index + '"]');
      const stick = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
      const fresh = renderMessage(state.messages[index], index);
      if (old) old.replaceWith(fresh); else renderAll();
      if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
    });
  }

  /* -- sources panel -------------------------------------------------------------------------------- */

  function openSource(c) {
    I.clear(ui.panelBody);
    const where = [];
    if (c.section && c.section !== c.title) where.push(c.section);
    if (c.page_start) where.push(c.page_end && c.page_end !== c.page_start
      ? t("chat.pages", { a: c.page_start, b: c.page_end }) : t("chat.page", { n: c.page_start }));
    const parts = [
      el("p", { class: "source-index" }, t("chat.source_n", { n: c.index })),
      el("h3", { class: "source-title" }, c.title || c.source_path),
      where.length ? el("p", { class: "muted small" }, where.join(" · ")) : null,
      el("p", { class: "muted small mono" }, c.source_path),
      el("blockquote", { class: "source-snippet" }, c.snippet)];
    ui.panelBody.append(...parts.filter(Boolean)); // append(null) would print "null"
    ui.panel.hidden = false;
    document.body.classList.add("panel-open");
    ui.panel.focus();
  }

  function closePanel() {
    ui.panel.hidden = true;
    document.body.classList.remove("panel-open");
  }
  $("source-close").addEventListener("click", closePanel);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape" && !ui.panel.hidden) closePanel(); });

  /* -- sending and streaming ------------------------------------------------------------------------ */

  function setBusy(busy) {
    ui.send.hidden = busy;
    ui.stop.hidden = !busy;
    ui.messages.setAttribute("aria-busy", busy ? "true" : "false");
    if (busy) ui.stop.focus();
  }

  async function ask() {
    const history = state.messages.filter(function (m) { return !m.error; })
      .map(function (m) { return { role: m.role, content: m.content }; });
    const answer = { role: "assistant", content: "", pending: true, citations: null };
    state.messages.push(answer);
    renderAll();
    const body = { model: ui.model.value, stream: true, messages: history };
    if (ui.knowledge.checked) {
      const cols = selectedCollections();
      body.knowledge = cols.length ? { collections: cols } : {};
    }
    const controller = new AbortController();
    state.controller = controller;
    setBusy(true);
    try {
      const resp = await fetch("/v1/chat/completions", {
        method: "POST", headers: I.headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
        body: JSON.stringify(body), signal: controller.signal,
      });
      if (!resp.ok) throw await I.errorFrom(resp);
      await readEvents(resp.body, answer);
    } catch (e) {
      if (e.name === "AbortError") answer.stopped = true;
      else answer.error = e.message || t("common.network_error");
    } finally {
      answer.pending = false;
      state.controller = null;
      setBusy(false);
      renderAll();
      ui.prompt.focus();
    }
    if (!answer.error) saveConversation();
  }

  // Server-sent events: "data: {json}\n\n" … "data: [DONE]".
  async function readEvents(stream, answer) {
    const reader = stream.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) !== -1) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") return;
          let payload;
          try { payload = JSON.parse(data); } catch (e) { continue; }
          if (payload.error) { answer.error = payload.error.message || String(payload.error); continue; }
          for (const choice of payload.choices || []) {
            const delta = choice.delta || {};
            if (delta.content) answer.content += delta.content;
          }
          if (Array.isArray(payload.citations)) answer.citations = payload.citations;
          renderLast();
        }
      }
    }
  }

  function submit() {
    const text = ui.prompt.value.trim();
    if (!text || state.controller) return;
    if (!ui.model.value) { I.toast(t("chat.no_model"), "warn"); return; }
    state.messages.push({ role: "user", content: text });
    ui.prompt.value = "";
    autosize();
    ask();
  }

  function regenerate() {
    if (state.controller) return;
    while (state.messages.length && state.messages[state.messages.length - 1].role === "assistant") state.messages.pop();
    if (state.messages.length) ask();
  }

  $("composer").addEventListener("submit", function (e) { e.preventDefault(); submit(); });
  ui.stop.addEventListener("click", function () { if (state.controller) state.controller.abort(); });
  ui.prompt.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  function autosize() {
    ui.prompt.style.height = "auto";
    ui.prompt.style.height = Math.min(ui.prompt.scrollHeight, 220) + "px";
  }
  ui.prompt.addEventListener("input", autosize);

  loadModels();
  loadCollections();
  loadHistory();
})();
