/* inhouse web UI: shared helpers (strings, language, sign-in, API calls, DOM building).
 *
 * Rules kept by every script of the UI: the DOM is built with createElement/textContent only (never
 * innerHTML), the API key lives in sessionStorage (never in a URL or a cookie), and every call goes to this
 * origin. Page scripts run after this one (all are `defer`) and use `window.inhouse`.
 */
(function () {
  "use strict";

  const KEY = "inhouse.key";
  const ACTOR = "inhouse.actor";
  const LANG = "inhouse.lang";
  const strings = JSON.parse(document.getElementById("i18n-data").textContent);
  const page = document.body.dataset.page;
  const I = (window.inhouse = { page: page, lang: document.documentElement.dataset.lang });

  I.t = function (key, vars) {
    let s = Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : key;
    if (vars) {
      for (const name of Object.keys(vars)) s = s.split("{" + name + "}").join(String(vars[name]));
    }
    return s;
  };

  /* -- DOM ------------------------------------------------------------------------------------------ */

  // el("button", {class: "btn", onclick: fn, "aria-label": "x"}, "text", child…): attributes are set with
  // setAttribute and strings become text nodes, so no value can ever be parsed as HTML.
  I.el = function (tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
      else if (name === "text") node.textContent = String(value);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };

  I.byId = function (id) { return document.getElementById(id); };

  I.clear = function (node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  };

  I.toast = function (message, kind) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = I.el("div", { class: "toast" + (kind ? " toast-" + kind : "") }, message);
    box.append(item);
    setTimeout(function () { item.remove(); }, 4000);
  };

  I.fmtBytes = function (n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  };

  I.fmtTime = function (when) { // unix seconds or an ISO string
    if (!when) return "—";
    const date = typeof when === "number" ? new Date(when * 1000) : new Date(when);
    if (isNaN(date.getTime())) return String(when);
    return date.toLocaleString(I.lang === "zh" ? "zh-CN" : "en-GB",
      { dateStyle: "medium", timeStyle: "short" });
  };

  I.copyText = function (text) {
    const done = function () { I.toast(I.t("common.copied"), "ok"); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text) && done(); });
    } else if (fallbackCopy(text)) {
      done();
    }
  };

  function fallbackCopy(text) {
    const area = I.el("textarea", { class: "visually-hidden", readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    if (!ok) I.toast(I.t("common.copy_failed"), "warn");
    return ok;
  }

  /* -- language ------------------------------------------------------------------------------------- */

  function setLangCookie(lang) {
    document.cookie = "inhouse_lang=" + lang + "; path=/; max-age=31536000; samesite=lax";
  }

  function setLang(lang) {
    localStorage.setItem(LANG, lang);
    setLangCookie(lang);
    location.reload();
  }

  // The server renders the language of the cookie; the choice itself is remembered in localStorage, so a
  // cleared cookie is restored once (guarded against a reload loop when cookies are refused).
  const remembered = localStorage.getItem(LANG);
  if ((remembered === "en" || remembered === "zh") && remembered !== I.lang && !sessionStorage.getItem("inhouse.langfix")) {
    sessionStorage.setItem("inhouse.langfix", "1");
    setLangCookie(remembered);
    location.reload();
    return;
  }
  for (const btn of document.querySelectorAll("[data-set-lang]")) {
    btn.addEventListener("click", function () { setLang(btn.dataset.setLang); });
  }

  /* -- auth and API --------------------------------------------------------------------------------- */

  I.key = function () { return sessionStorage.getItem(KEY); };
  I.actor = function () {
    try { return JSON.parse(sessionStorage.getItem(ACTOR) || "null"); } catch (e) { return null; }
  };
  I.isAdmin = function () { const a = I.actor(); return !!a && a.role === "admin"; };

  I.signOut = function () {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ACTOR);
    location.assign("/signin");
  };

  class ApiError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }
  I.ApiError = ApiError;

  I.headers = function (extra) {
    return Object.assign({ Authorization: "Bearer " + I.key() }, extra || {});
  };

  I.errorFrom = async function (resp) {
    let message = resp.status + " " + resp.statusText;
    let code = null;
    try {
      const body = await resp.json();
      if (body && body.error) { message = body.error.message || message; code = body.error.code || null; }
    } catch (e) { /* not JSON: keep the status line */ }
    if (resp.status === 401) { I.signOut(); }
    return new ApiError(resp.status, message, code);
  };

  // JSON API call on this origin with the signed-in key. Throws ApiError with the server's message.
  I.api = async function (path, options) {
    const opts = options || {};
    const init = { method: opts.method || "GET", headers: I.headers(), signal: opts.signal };
    if (opts.json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.json);
    }
    const resp = await fetch(path, init);
    if (!resp.ok) throw await I.errorFrom(resp);
    if (opts.raw) return resp;
    return resp.status === 204 ? null : resp.json();
  };

  /* -- page start ----------------------------------------------------------------------------------- */

  I.signedIn = false;
  if (page === "signin") {
    setupSignIn();
  } else if (!I.key()) {
    location.replace("/signin");
  } else {
    I.signedIn = true;
    const actor = I.actor() || {};
    const name = (actor.user && (actor.user.display_name || actor.user.name)) || actor.name || "?";
    const whoName = document.getElementById("who-name");
    if (whoName) whoName.textContent = name;
    const whoRole = document.getElementById("who-role");
    if (whoRole) whoRole.textContent = actor.role === "admin" ? I.t("role.admin") : I.t("role.member");
    const avatar = document.getElementById("who-avatar");
    if (avatar) avatar.textContent = name.slice(0, 1).toUpperCase();
    if (I.isAdmin()) {
      for (const node of document.querySelectorAll("[data-admin-only]")) node.hidden = false;
    }
    const out = document.getElementById("signout");
    if (out) out.addEventListener("click", I.signOut);
  }

  function setupSignIn() {
    const form = document.getElementById("signin-form");
    const input = document.getElementById("key");
    const error = document.getElementById("signin-error");
    const submit = document.getElementById("signin-submit");
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      submit.disabled = true;
      error.hidden = true;
      try {
        // The key goes in the body of a POST to this origin: never in a URL, history or logs.
        const resp = await fetch("/signin", {
          method: "POST",
          headers: { Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ key: input.value.trim() }),
        });
        const body = await resp.json();
        if (body.ok) {
          sessionStorage.setItem(KEY, input.value.trim());
          sessionStorage.setItem(ACTOR, JSON.stringify(body.actor));
          location.assign("/");
          return;
        }
        error.textContent = body.message || I.t("signin.invalid");
      } catch (e) {
        error.textContent = I.t("common.network_error");
      }
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", "key-help signin-error");
      input.focus();
      submit.disabled = false;
    });
  }
})();
