/* The console's only script: live SLA countdowns, the queue's periodic refresh, and the override
   form's value list. No data is written into the page as HTML except the server's own escaped rows. */
(function () {
  "use strict";
  var zh = document.body.getAttribute("data-lang") === "zh-CN";

  function span(ms) {
    var minutes = Math.floor(Math.abs(ms) / 60000);
    var d = Math.floor(minutes / 1440), h = Math.floor((minutes % 1440) / 60), m = minutes % 60;
    var parts = [];
    if (d) parts.push(d + (zh ? "天" : "d"));
    if (d || h) parts.push(h + (zh ? "小时" : "h"));
    parts.push((m < 10 && (d || h) ? "0" : "") + m + (zh ? "分" : "m"));
    return parts.join(zh ? "" : " ");
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-due"));
      if (isNaN(due)) return;
      var left = due - now;
      el.textContent = left >= 0 ? (zh ? "剩余 " : "due in ") + span(left) : (zh ? "已超时 " : "overdue by ") + span(left);
      el.classList.toggle("overdue", left < 0);
      var row = el.closest("tr");
      if (row && left < 0) row.classList.add("breached");
    });
  }

  function refreshQueue(body) {
    var url = body.getAttribute("data-refresh");
    var every = Math.max(3, parseInt(body.getAttribute("data-every"), 10) || 15) * 1000;
    setInterval(function () {
      if (document.hidden) return;
      fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (html !== null) { body.innerHTML = html; tick(); } })
        .catch(function () { /* the next round tries again */ });
    }, every);
  }

  function overrideValues(select) {
    var target = document.getElementById(select.getAttribute("data-values-for"));
    if (!target) return;
    function sync() {
      var first = null;
      Array.prototype.forEach.call(target.options, function (o) {
        var show = o.getAttribute("data-dimension") === select.value;
        o.hidden = !show; o.disabled = !show;
        if (show && first === null) first = o;
      });
      if (target.selectedOptions.length === 0 || target.selectedOptions[0].disabled) {
        if (first) first.selected = true;
      }
    }
    select.addEventListener("change", sync);
    sync();
  }

  function serviceStatus(el) {
    // A live line on the sign-in page: which services answer. A long poll: the console answers
    // when something changed, or after a while, and the page asks again at once.
    var names = zh ? {customer: "客户", tiering: "分级", complaints: "投诉", notifications: "通知"} : {};
    var url = el.getAttribute("data-status"), seen = "";
    function show(health) {
      el.textContent = Object.keys(health).map(function (k) {
        return (names[k] || k) + ": " + el.getAttribute(health[k] ? "data-up" : "data-down");
      }).join(" · ");
    }
    function poll() {
      fetch(url + "?seen=" + encodeURIComponent(seen), {credentials: "same-origin", cache: "no-store"})
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (body) { seen = body.seen; show(body.services); poll(); })
        .catch(function () { setTimeout(poll, 5000); });
    }
    poll();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var status = document.getElementById("service-status");
    if (status && status.getAttribute("data-status")) serviceStatus(status);
    tick();
    setInterval(tick, 1000);
    var body = document.getElementById("queue-rows");
    if (body && body.getAttribute("data-refresh")) refreshQueue(body);
    document.querySelectorAll("select[data-values-for]").forEach(overrideValues);
  });
})();
