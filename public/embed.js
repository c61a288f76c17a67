/*! edgeshelf embed widget. <div data-edgeshelf-product="ID" data-key="KEY"></div> or
    <div data-edgeshelf-category="CATEGORY_ID" data-key="KEY" data-limit="6"></div>
    Optional: data-currency, data-locale, data-refresh (seconds, default 60), data-tracking (for the fallback link).
    Renders in a shadow root; refreshes availability with ETag polling; quietly shows a fallback link when the API is down. */
(function () {
  "use strict";
  var W = window;
  if (W.EdgeShelf && W.EdgeShelf.version) return W.EdgeShelf.scan();
  var me = document.currentScript;
  var API = me && me.src ? new URL(me.src).origin : location.origin;
  var SITE = "__EDGESHELF_SITE__"; // filled in by GET /embed.js from SITE_BASE_URL
  var TEXT = { in_stock: "In stock", low_stock: "Only {n} left", out_of_stock: "Out of stock" };
  var CSS =
    ":host{display:block}" +
    ".w{all:initial;display:block;font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2327;text-align:left}" +
    ".w *{box-sizing:border-box;font:inherit;color:inherit;margin:0;padding:0}" +
    ".g{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px}" +
    ".c{display:flex;flex-direction:column;gap:6px;max-width:300px;padding:12px;border:1px solid #dcdfe4;border-radius:10px;background:#fff}" +
    ".i{display:block;width:100%;aspect-ratio:1;object-fit:cover;border-radius:6px;background:#eef1f4}" +
    ".ph{display:flex;align-items:center;justify-content:center;font-size:40px;font-weight:600;color:#9aa3ad}" +
    ".t{font-weight:600;font-size:15px}" +
    ".p{font-size:18px;font-weight:700}.p s{font-size:13px;font-weight:400;color:#6b7280;margin-left:6px}" +
    ".b{align-self:flex-start;padding:2px 8px;border-radius:99px;font-size:12px;font-weight:600}" +
    ".in_stock{background:#dcfce7;color:#166534}.low_stock{background:#fef3c7;color:#92400e}.out_of_stock{background:#fee2e2;color:#991b1b}" +
    "a.buy{display:block;text-align:center;padding:8px;border-radius:6px;background:#1d4ed8;color:#fff;text-decoration:none;font-weight:600}" +
    "a.buy[aria-disabled=true]{background:#9ca3af}" +
    "a.f{color:#1d4ed8;text-decoration:underline}";

  function h(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function url(el, path, extra) {
    var u = new URL(path, API), d = el.dataset, q = u.searchParams;
    q.set("format", "json");
    if (d.key) q.set("key", d.key);
    if (d.currency) q.set("currency", d.currency);
    q.set("locale", d.locale || navigator.language || "en");
    for (var k in extra) q.set(k, extra[k]);
    return u.toString();
  }

  // Polls with our own If-None-Match so a 304 costs nothing and skips the re-render.
  function get(state) {
    var headers = state.etag ? { "If-None-Match": state.etag } : {};
    return fetch(state.url, { headers: headers, cache: "no-store", credentials: "omit" }).then(function (r) {
      if (r.status === 304) return null;
      if (!r.ok) throw new Error("HTTP " + r.status);
      state.etag = r.headers.get("etag");
      return r.json();
    });
  }

  function badge(av) {
    var s = (av && av.status) || "out_of_stock";
    return h("span", "b " + s, TEXT[s].replace("{n}", av ? av.available : 0));
  }

  function image(item) {
    var ph = h("div", "i ph", (item.title || "?").charAt(0));
    if (!item.image) return ph;
    var img = h("img", "i");
    img.alt = item.title;
    img.loading = "lazy";
    img.onerror = function () { img.replaceWith(ph); };
    img.src = item.image;
    return img;
  }

  function card(item) {
    var c = h("article", "c");
    c.dataset.product = item.id;
    c.appendChild(image(item));
    c.appendChild(h("div", "t", item.title));
    var pr = item.price, p = h("div", "p", pr ? pr.formatted : "");
    if (pr && pr.compare_at_formatted) p.appendChild(h("s", "", pr.compare_at_formatted));
    c.appendChild(p);
    c.appendChild(badge(item.availability));
    var a = h("a", "buy", "Buy");
    a.href = item.click_url;
    a.target = "_blank";
    a.rel = "sponsored noopener";
    if (item.availability && item.availability.status === "out_of_stock") a.setAttribute("aria-disabled", "true");
    c.appendChild(a);
    return c;
  }

  // Extra strips below a product card (e.g. "you may also like"): fn(container, item, ctx).
  var sections = [];

  function renderProduct(box, body, el) {
    box.textContent = "";
    box.appendChild(card(body.item));
    sections.forEach(function (fn) {
      try { fn(box, body.item, { api: API, el: el, url: function (p, x) { return url(el, p, x || {}); } }); } catch (e) { /* a strip never breaks the card */ }
    });
  }

  function renderGrid(box, body) {
    box.textContent = "";
    var g = h("div", "g");
    body.items.forEach(function (item) { g.appendChild(card(item)); });
    box.appendChild(g);
  }

  function fallback(box, el) {
    box.textContent = "";
    if (el.children.length || el.textContent.trim()) return box.appendChild(document.createElement("slot"));
    var id = el.dataset.edgeshelfProduct;
    var a = h("a", "f", id ? "View this product" : "Browse the shop");
    a.href = id ? API + "/r/" + encodeURIComponent(el.dataset.tracking || "-") + "/" + encodeURIComponent(id) : SITE;
    a.rel = "sponsored noopener";
    box.appendChild(a);
  }

  function mount(el) {
    if (el.__edgeshelf) return;
    var d = el.dataset, id = d.edgeshelfProduct, cat = d.edgeshelfCategory;
    if (!id && !cat) return;
    var root = el.shadowRoot || el.attachShadow({ mode: "open" });
    var style = h("style", "", CSS), box = h("div", "w");
    box.setAttribute("part", "widget");
    root.textContent = "";
    root.appendChild(style);
    root.appendChild(box);
    var state = {
      url: id ? url(el, "/v1/feeds/products/" + encodeURIComponent(id), {}) : url(el, "/v1/feeds/products", { category: cat, limit: String(Math.min(+d.limit || 6, 50)) }),
      etag: null, shown: false,
    };
    var every = Math.max(2, +d.refresh || 60) * 1000, delay = every;
    el.__edgeshelf = state;
    function tick() {
      if (document.hidden && state.shown) return schedule();
      get(state).then(function (body) {
        delay = every;
        if (body) (id ? renderProduct(box, body, el) : renderGrid(box, body));
        state.shown = true;
        el.setAttribute("data-edgeshelf-state", "ready");
      }, function () {
        // Keep the last good card; only a widget that never rendered shows the fallback. Back off while down.
        if (!state.shown) { fallback(box, el); el.setAttribute("data-edgeshelf-state", "fallback"); }
        delay = Math.min(delay * 2, 600000);
      }).then(schedule);
    }
    function schedule() { state.timer = setTimeout(tick, delay); }
    tick();
  }

  function scan() {
    var nodes = document.querySelectorAll("[data-edgeshelf-product],[data-edgeshelf-category]");
    for (var i = 0; i < nodes.length; i++) mount(nodes[i]);
  }

  W.EdgeShelf = { version: "1", scan: scan, mount: mount, addSection: function (fn) { sections.push(fn); } };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
})();
