/* Assistants page, schedule screen: the caller's week from GET /v1/apps/schedule/events (7 day columns × hours,
 * previous/next week), overlapping events marked as conflicts, a free-slot finder (POST …/free-slots) whose slots
 * are highlighted in the grid and fill the new-event form when chosen, event creation (POST …/events, the
 * server's conflict report shown), deletion, and the .ics export. Times are shown and sent in the browser's
 * time zone. Every event and slot is a button inside a list labelled by its day, so the week works with the
 * keyboard and a screen reader; positions are set through the CSSOM (the page's CSP forbids style attributes). */
(function () {
  "use strict";
  const I = window.inhouse;
  if (!I || !I.signedIn) return;
  const el = I.el;
  const API = "/v1/apps/schedule";
  const DAY_MS = 86400000;

  function locale() { return I.lang === "zh" ? "zh-CN" : "en-GB"; }
  function pad(n) { return String(n).padStart(2, "0"); }
  function dateStr(d) { return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()); }
  function timeStr(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()); }
  function addDays(d, n) { return new Date(d.getFullYear(), d.getMonth(), d.getDate() + n); }
  function mondayOf(d) { return addDays(d, -((d.getDay() + 6) % 7)); }
  function midnight(d) { return new Date(d.getFullYear(), d.getMonth(), d.getDate()); }
  function parseDate(s) { const p = s.split("-").map(Number); return new Date(p[0], p[1] - 1, p[2]); }
  function fmtDay(d) { return d.toLocaleDateString(locale(), { weekday: "short", day: "numeric", month: "short" }); }
  function fmtSpan(s, e) { return timeStr(s) + "–" + (e - midnight(s) >= DAY_MS && e.getHours() === 0 && e.getMinutes() === 0 ? "24:00" : timeStr(e)); }
  function overlaps(a, b) { return a.start < b.end && b.start < a.end; }
  function query(params) {
    const zone = I.zone();
    if (zone) params.timezone = zone;
    return new URLSearchParams(params).toString();
  }

  (I.screens = I.screens || {}).schedule = function (body) {
    const state = { week: mondayOf(new Date()), events: [], slots: [], selected: null, loading: 0 };

    /* -- toolbar and grid ----------------------------------------------------------------------------- */

    const range = el("h3", { class: "section-title", id: "sched-range", "aria-live": "polite", tabindex: "-1" });
    const prev = el("button", { type: "button", class: "btn btn-secondary btn-sm", id: "sched-prev" }, "‹ " + I.t("sched.prev"));
    const today = el("button", { type: "button", class: "btn btn-secondary btn-sm", id: "sched-today" }, I.t("sched.this_week"));
    const next = el("button", { type: "button", class: "btn btn-secondary btn-sm", id: "sched-next" }, I.t("sched.next") + " ›");
    const ics = el("button", { type: "button", class: "btn btn-secondary btn-sm", id: "sched-ics" }, I.t("sched.download_ics"));
    const zoneNote = el("span", { class: "muted small" }, I.zone() ? I.t("sched.zone", { zone: I.zone() }) : "");
    const loadStatus = el("p", { class: "muted small", id: "sched-load-status", role: "status" });
    const grid = el("div", { class: "week", id: "sched-week", role: "group", "aria-labelledby": "sched-range" });
    const detail = el("section", { class: "sched-detail", id: "sched-detail", hidden: true, "aria-labelledby": "sched-detail-title" });
    prev.addEventListener("click", function () { go(addDays(state.week, -7)); });
    next.addEventListener("click", function () { go(addDays(state.week, 7)); });
    today.addEventListener("click", function () { go(mondayOf(new Date())); });
    ics.addEventListener("click", exportIcs);

    /* -- free-slot finder ------------------------------------------------------------------------------ */

    const fDuration = el("input", { id: "sched-free-duration", class: "input input-xs", type: "number", min: 5, max: 1440, step: 5, value: 60, required: true });
    const fFrom = el("input", { id: "sched-free-from", class: "input input-sm", type: "date", required: true });
    const fTo = el("input", { id: "sched-free-to", class: "input input-sm", type: "date", required: true });
    const fWith = el("input", { id: "sched-free-with", class: "input", type: "text", maxlength: 500, autocomplete: "off",
      placeholder: I.t("sched.with_example") });
    const fGo = el("button", { id: "sched-free-go", class: "btn btn-secondary", type: "submit" }, I.t("sched.find"));
    const fClear = el("button", { id: "sched-free-clear", class: "btn btn-ghost btn-sm", type: "button", hidden: true }, I.t("sched.clear_slots"));
    const fStatus = el("p", { id: "sched-free-status", class: "muted small", role: "status" });
    const freeForm = el("form", { id: "sched-free-form", class: "sched-form", "aria-labelledby": "sched-free-title" },
      el("h4", { class: "small-title", id: "sched-free-title" }, I.t("sched.free_title")),
      el("div", { class: "form-row" },
        I.field(I.t("sched.duration"), fDuration), I.field(I.t("sched.from"), fFrom), I.field(I.t("sched.to"), fTo),
        I.field(I.t("sched.with"), fWith, "field-grow")),
      el("p", { class: "form-actions" }, fGo, fClear), fStatus);
    fClear.addEventListener("click", function () { state.slots = []; fClear.hidden = true; fStatus.textContent = ""; render(); });
    freeForm.addEventListener("submit", findSlots);

    /* -- new event ------------------------------------------------------------------------------------- */

    const cTitle = el("input", { id: "sched-title", class: "input", type: "text", maxlength: 300, required: true, autocomplete: "off" });
    const cDate = el("input", { id: "sched-date", class: "input input-sm", type: "date", required: true });
    const cStart = el("input", { id: "sched-start", class: "input input-xs", type: "time", required: true, value: "09:00" });
    const cEnd = el("input", { id: "sched-end", class: "input input-xs", type: "time", required: true, value: "10:00" });
    const cPlace = el("input", { id: "sched-location", class: "input", type: "text", maxlength: 300, autocomplete: "off" });
    const cWith = el("input", { id: "sched-attendees", class: "input", type: "text", maxlength: 2000, autocomplete: "off",
      placeholder: I.t("sched.with_example") });
    const cGo = el("button", { id: "sched-create", class: "btn btn-primary", type: "submit" }, I.t("sched.create"));
    const cStatus = el("div", { id: "sched-create-status", class: "small", role: "status" });
    const createForm = el("form", { id: "sched-create-form", class: "sched-form", "aria-labelledby": "sched-create-title" },
      el("h4", { class: "small-title", id: "sched-create-title" }, I.t("sched.new_event")),
      el("div", { class: "form-row" },
        I.field(I.t("sched.title"), cTitle, "field-grow"), I.field(I.t("sched.date"), cDate),
        I.field(I.t("sched.start"), cStart), I.field(I.t("sched.end"), cEnd)),
      el("div", { class: "form-row" },
        I.field(I.t("sched.location"), cPlace, "field-grow"), I.field(I.t("sched.attendees"), cWith, "field-grow")),
      el("p", { class: "form-actions" }, cGo), cStatus);
    createForm.addEventListener("submit", createEvent);
    cDate.value = dateStr(new Date());

    body.append(
      el("div", { class: "sched-toolbar" }, el("div", { class: "sched-nav", role: "group", "aria-label": I.t("sched.week_nav") }, prev, today, next),
        range, zoneNote, el("span", { class: "sched-spacer" }), ics),
      loadStatus,
      el("div", { class: "week-wrap" }, grid),
      el("p", { class: "sched-legend muted small", "aria-hidden": "true" },
        el("span", { class: "legend-swatch legend-event" }), I.t("sched.legend_event"),
        el("span", { class: "legend-swatch legend-conflict" }), I.t("sched.legend_conflict"),
        el("span", { class: "legend-swatch legend-free" }), I.t("sched.legend_free")),
      detail,
      el("div", { class: "sched-forms" }, createForm, freeForm));

    go(state.week);

    /* -- loading -------------------------------------------------------------------------------------- */

    // Show the week starting on `week` (a local Monday). The finder's range follows the shown week unless
    // `keepRange` (the finder itself moved to the week of the slots it found).
    async function go(week, keepRange) {
      state.week = week;
      const from = dateStr(week);
      if (!keepRange) {
        const now = new Date();
        fFrom.value = dateStr(week < now && now < addDays(week, 7) ? now : week);
        fTo.value = dateStr(addDays(week, 6));
      }
      const ticket = ++state.loading;
      loadStatus.textContent = I.t("sched.loading");
      try {
        const resp = await I.api(API + "/events?" + query({ start: from + "T00:00", end: dateStr(addDays(week, 7)) + "T00:00" }));
        if (ticket !== state.loading) return; // a later week was asked for meanwhile
        state.events = resp.data.map(function (e) { return Object.assign({}, e, { s: new Date(e.start), e: new Date(e.end) }); });
        loadStatus.textContent = state.events.length ? I.t("sched.count", { n: state.events.length }) : I.t("sched.empty");
      } catch (e) {
        if (ticket !== state.loading) return;
        state.events = [];
        loadStatus.textContent = e.message || I.t("common.network_error");
      }
      render();
    }

    /* -- the week grid -------------------------------------------------------------------------------- */

    function render() {
      const days = [0, 1, 2, 3, 4, 5, 6].map(function (i) { return addDays(state.week, i); });
      const last = days[6];
      const sameYear = state.week.getFullYear() === last.getFullYear();
      const fmt = new Intl.DateTimeFormat(locale(), { day: "numeric", month: "short", year: "numeric" });
      range.textContent = fmt.formatRange ? fmt.formatRange(state.week, last)
        : fmtDay(state.week) + " – " + fmtDay(last) + (sameYear ? " " + last.getFullYear() : "");
      const timed = state.events.filter(function (e) { return !e.all_day; });
      const conflicted = new Set();
      for (let i = 0; i < timed.length; i++) {
        for (let j = i + 1; j < timed.length; j++) {
          if (overlaps({ start: timed[i].s, end: timed[i].e }, { start: timed[j].s, end: timed[j].e })) {
            conflicted.add(timed[i].id);
            conflicted.add(timed[j].id);
          }
        }
      }
      // Per day: the pieces of timed events and free slots that fall on it (an overnight event has two).
      const perDay = days.map(function (d) {
        const d0 = d.getTime();
        const d1 = addDays(d, 1).getTime();
        const pieces = [];
        for (const e of timed) {
          const s = Math.max(e.s.getTime(), d0);
          const t = Math.min(e.e.getTime(), d1);
          const instant = e.s.getTime() === e.e.getTime() && s >= d0 && s < d1; // a zero-length event still shows
          if (s < t || instant) pieces.push({ kind: "event", item: e, s: s, t: Math.max(t, s + 15 * 60000) });
        }
        for (const sl of state.slots) {
          const s = Math.max(sl.s.getTime(), d0);
          const t = Math.min(sl.e.getTime(), d1);
          if (s < t) pieces.push({ kind: "free", item: sl, s: s, t: t });
        }
        return pieces;
      });
      let lo = 8;
      let hi = 19;
      days.forEach(function (d, i) {
        for (const p of perDay[i]) {
          lo = Math.min(lo, Math.floor((p.s - d.getTime()) / 3600000));
          hi = Math.max(hi, Math.ceil((Math.min(p.t, addDays(d, 1).getTime()) - d.getTime()) / 3600000));
        }
      });
      hi = Math.min(24, Math.max(hi, lo + 1));
      I.clear(grid);
      const todayStr = dateStr(new Date());
      grid.append(el("div", { class: "week-corner" }));
      days.forEach(function (d, i) {
        grid.append(el("div", { class: "week-day-head", id: "sched-day-" + i, "aria-current": dateStr(d) === todayStr ? "date" : null,
          "data-date": dateStr(d) }, fmtDay(d)));
      });
      grid.append(el("div", { class: "week-hour-label week-allday-label" }, I.t("sched.all_day")));
      days.forEach(function (d, i) {
        const items = state.events.filter(function (e) { return e.all_day && e.s < addDays(d, 1) && e.e > d; });
        grid.append(el("ul", { class: "week-allday", "aria-label": I.t("sched.all_day_of", { day: fmtDay(d) }) },
          items.map(function (e) { return el("li", {}, eventButton(e, e.title, conflicted)); })));
      });
      const hours = el("div", { class: "week-hours", "aria-hidden": "true" });
      for (let h = lo; h < hi; h++) hours.append(el("div", { class: "week-hour-label" }, pad(h) + ":00"));
      grid.append(hours);
      const total = (hi - lo) * 3600000;
      days.forEach(function (d, i) {
        const col = el("div", { class: "week-col", "data-date": dateStr(d) });
        const lines = el("div", { class: "week-lines", "aria-hidden": "true" });
        for (let h = lo; h < hi; h++) lines.append(el("div", { class: "week-line" }));
        const list = el("ul", { class: "week-items", "aria-labelledby": "sched-day-" + i });
        const base = d.getTime() + lo * 3600000;
        const pieces = perDay[i];
        layout(pieces.filter(function (p) { return p.kind === "event"; }));
        for (const p of pieces) {
          const node = p.kind === "event"
            ? el("li", { class: "week-item" }, eventButton(p.item, null, conflicted))
            : el("li", { class: "week-item week-item-free" }, slotButton(p.item));
          node.style.top = ((p.s - base) / total) * 100 + "%";
          node.style.height = (Math.min(p.t - p.s, base + total - p.s) / total) * 100 + "%";
          if (p.kind === "event") {
            node.style.left = (p.lane / p.lanes) * 100 + "%";
            node.style.width = (1 / p.lanes) * 100 + "%";
          }
          list.append(node);
        }
        col.append(lines, list);
        grid.append(col);
      });
      if (state.selected) showDetail(state.events.find(function (e) { return e.id === state.selected; }) || null, false);
    }

    // Overlapping events share their day column side by side: each gets a lane out of its cluster's lanes.
    function layout(pieces) {
      pieces.sort(function (a, b) { return a.s - b.s || b.t - a.t; });
      let cluster = [];
      let clusterEnd = -Infinity;
      const flush = function () {
        const ends = [];
        for (const p of cluster) {
          let lane = ends.findIndex(function (end) { return end <= p.s; });
          if (lane < 0) { lane = ends.length; ends.push(p.t); } else { ends[lane] = p.t; }
          p.lane = lane;
        }
        for (const p of cluster) p.lanes = Math.max(1, ends.length);
      };
      for (const p of pieces) {
        if (p.s >= clusterEnd && cluster.length) { flush(); cluster = []; }
        cluster.push(p);
        clusterEnd = cluster.length === 1 ? p.t : Math.max(clusterEnd, p.t);
      }
      if (cluster.length) flush();
    }

    // An event: its title, then its time (a timed event), and when it overlaps another a warning sign (its
    // spoken form, "Conflict", is in the button's text for screen readers). The tooltip has the whole text.
    function eventButton(e, label, conflicted) {
      const clash = conflicted.has(e.id);
      const time = label === null ? fmtSpan(e.s, e.e) : "";
      const btn = el("button", { type: "button", class: "week-event" + (clash ? " is-conflict" : "") + (state.selected === e.id ? " is-selected" : ""),
        "data-event-id": e.id, "aria-expanded": state.selected === e.id ? "true" : "false", "aria-controls": "sched-detail",
        title: [label === null ? e.title : label, time, clash ? I.t("sched.conflict") : ""].filter(Boolean).join(" · ") },
      el("span", { class: "week-event-title" }, clash ? el("span", { class: "week-event-flag", "aria-hidden": "true" }, "⚠ ") : null,
        label === null ? e.title : label),
      time ? el("span", { class: "week-event-time" }, time) : null,
      clash ? el("span", { class: "visually-hidden" }, " " + I.t("sched.conflict")) : null);
      btn.addEventListener("click", function () { showDetail(e, true); });
      return btn;
    }

    function slotButton(sl) {
      const btn = el("button", { type: "button", class: "week-free", "data-slot": sl.start },
        el("span", { class: "week-event-time" }, fmtSpan(sl.s, sl.e)), el("span", {}, I.t("sched.free")));
      btn.setAttribute("aria-label", I.t("sched.use_slot", { when: fmtDay(sl.s) + " " + fmtSpan(sl.s, sl.e) }));
      btn.addEventListener("click", function () {
        cDate.value = dateStr(sl.s);
        cStart.value = timeStr(sl.s);
        cEnd.value = timeStr(sl.e);
        cTitle.focus();
      });
      return btn;
    }

    /* -- event details -------------------------------------------------------------------------------- */

    function showDetail(e, focus) {
      I.clear(detail);
      if (!e) { state.selected = null; detail.hidden = true; return; }
      const opening = state.selected !== e.id;
      state.selected = e.id;
      for (const b of grid.querySelectorAll(".week-event")) {
        const on = b.dataset.eventId === e.id;
        b.classList.toggle("is-selected", on);
        b.setAttribute("aria-expanded", on ? "true" : "false");
      }
      const clashes = state.events.filter(function (o) {
        return o.id !== e.id && !o.all_day && !e.all_day && overlaps({ start: o.s, end: o.e }, { start: e.s, end: e.e });
      });
      const when = e.all_day ? fmtDay(e.s) + " · " + I.t("sched.all_day") : fmtDay(e.s) + " " + fmtSpan(e.s, e.e);
      const title = el("h4", { class: "section-title", id: "sched-detail-title", tabindex: "-1" }, e.title);
      const close = el("button", { type: "button", class: "btn btn-ghost btn-sm", id: "sched-detail-close" }, I.t("common.close"));
      const del = el("button", { type: "button", class: "btn btn-secondary btn-sm btn-danger-text", id: "sched-delete" }, I.t("sched.delete"));
      const rows = [[I.t("sched.when"), when]];
      if (e.location) rows.push([I.t("sched.location"), e.location]);
      if (e.attendees && e.attendees.length) rows.push([I.t("sched.attendees"), e.attendees.join(", ")]);
      if (e.description) rows.push([I.t("common.description"), e.description]);
      detail.append(el("div", { class: "panel-head" }, title, close),
        el("dl", { class: "kv" }, rows.flatMap(function (r) { return [el("dt", {}, r[0]), el("dd", {}, r[1])]; })),
        clashes.length ? el("p", { class: "banner banner-warn small", id: "sched-detail-conflicts" },
          I.t("sched.overlaps", { list: clashes.map(function (o) { return o.title + " (" + fmtSpan(o.s, o.e) + ")"; }).join(", ") })) : null,
        el("p", { class: "form-actions" }, del));
      detail.hidden = false;
      close.addEventListener("click", function () {
        const id = state.selected;
        showDetail(null);
        const back = grid.querySelector(".week-event[data-event-id='" + CSS.escape(id) + "']");
        for (const b of grid.querySelectorAll(".week-event")) { b.classList.remove("is-selected"); b.setAttribute("aria-expanded", "false"); }
        if (back) back.focus();
      });
      del.addEventListener("click", async function () {
        if (del.dataset.confirm !== "1") { // a second press confirms
          del.dataset.confirm = "1";
          del.textContent = I.t("common.confirm_delete");
          return;
        }
        del.disabled = true;
        try {
          await I.api(API + "/events/" + encodeURIComponent(e.id), { method: "DELETE" });
          showDetail(null);
          I.toast(I.t("sched.deleted", { title: e.title }), "ok");
          await go(state.week);
          range.focus();
        } catch (err) {
          del.disabled = false;
          I.toast(err.message || I.t("common.network_error"), "warn");
        }
      });
      if (focus && opening) title.focus();
    }

    /* -- actions -------------------------------------------------------------------------------------- */

    async function createEvent(event) {
      event.preventDefault();
      I.clear(cStatus);
      cStatus.className = "small";
      if (cEnd.value <= cStart.value) {
        cStatus.className = "small form-error";
        cStatus.textContent = I.t("sched.end_after_start");
        cEnd.focus();
        return;
      }
      const req = { title: cTitle.value.trim(), start: cDate.value + "T" + cStart.value, end: cDate.value + "T" + cEnd.value,
        location: cPlace.value.trim(), attendees: cWith.value.split(/[,，、]/).map(function (s) { return s.trim(); }).filter(Boolean) };
      const zone = I.zone();
      if (zone) req.timezone = zone;
      cGo.disabled = true;
      try {
        const out = await I.api(API + "/events", { method: "POST", json: req });
        const ev = out.event;
        const s = new Date(ev.start);
        const e = new Date(ev.end);
        cStatus.append(el("p", { class: "banner banner-ok", id: "sched-created" }, I.t("sched.created", { title: ev.title, when: fmtDay(s) + " " + fmtSpan(s, e) })));
        if (out.conflicts && out.conflicts.length) {
          cStatus.append(el("p", { class: "banner banner-warn", id: "sched-created-conflicts" }, I.t("sched.overlaps", {
            list: out.conflicts.map(function (c) { return c.title + " (" + fmtSpan(new Date(c.start), new Date(c.end)) + ")"; }).join(", ") })));
        }
        state.slots = state.slots.filter(function (sl) { return !overlaps({ start: sl.s, end: sl.e }, { start: s, end: e }); });
        cTitle.value = "";
        await go(mondayOf(s));
      } catch (err) {
        cStatus.className = "small form-error";
        cStatus.textContent = err.message || I.t("common.network_error");
      } finally {
        cGo.disabled = false;
      }
    }

    async function findSlots(event) {
      event.preventDefault();
      const minutes = Number(fDuration.value);
      const from = parseDate(fFrom.value);
      const to = addDays(parseDate(fTo.value), 1);
      if (to <= from) {
        fStatus.textContent = I.t("sched.end_after_start");
        fTo.focus();
        return;
      }
      const now = new Date();
      const start = from < now ? dateStr(now) + "T" + timeStr(now) : fFrom.value + "T00:00";
      const req = { duration_minutes: minutes, start: start, end: dateStr(to) + "T00:00", limit: 40,
        step_minutes: Math.min(240, Math.max(5, minutes)),
        attendees: fWith.value.split(/[,，、]/).map(function (s) { return s.trim(); }).filter(Boolean) };
      const zone = I.zone();
      if (zone) req.timezone = zone;
      fGo.disabled = true;
      fStatus.textContent = I.t("sched.finding");
      try {
        const out = await I.api(API + "/free-slots", { method: "POST", json: req });
        state.slots = out.slots.map(function (sl) { return { start: sl.start, end: sl.end, s: new Date(sl.start), e: new Date(sl.end) }; });
        fClear.hidden = state.slots.length === 0;
        if (!state.slots.length) {
          fStatus.textContent = I.t("sched.no_slots");
          render();
          return;
        }
        fStatus.textContent = I.t("sched.slots_found", { n: state.slots.length, first: fmtDay(state.slots[0].s) + " " + fmtSpan(state.slots[0].s, state.slots[0].e) });
        const first = mondayOf(state.slots[0].s);
        if (first.getTime() !== state.week.getTime()) await go(first, true);
        else render();
      } catch (err) {
        fStatus.textContent = err.message || I.t("common.network_error");
      } finally {
        fGo.disabled = false;
      }
    }

    async function exportIcs() {
      try {
        const resp = await I.api(API + "/export.ics?" + query({}), { raw: true });
        I.saveBlob(await resp.blob(), "calendar.ics");
      } catch (e) {
        I.toast(e.message || I.t("common.network_error"), "warn");
      }
    }
  };
})();
