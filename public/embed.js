/*! edgeshelf embed widget. <div data-edgeshelf-product="ID" data-key="KEY"></div> or
    <div data-edgeshelf-category="CATEGORY_ID" data-key="KEY" data-limit="6"></div>
    Optional: data-currency, data-locale, data-refresh (seconds, default 60), data-tracking (for the fallback link),
    data-recommendations="related|complementary|substitutes" (a "you may also like" strip under a product card).
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

  // Optional "you may also like" strip under a product card, from GET /v1/products/:id/recommendations.
  // Opt in with data-recommendations="related" (or "complementary", "substitutes"); data-recommendations-limit (default 4).
  var REC_TITLE = { related: "You may also like", complementary: "Pairs well with", substitutes: "In stock alternatives" };
  CSS +=
    ".r{margin-top:12px}.r h3{font-weight:600;font-size:14px;margin-bottom:8px}" +
    ".rs{display:flex;gap:8px;overflow-x:auto}" +
    ".rc{flex:0 0 120px;display:flex;flex-direction:column;gap:4px;padding:8px;border:1px solid #dcdfe4;border-radius:8px;background:#fff;text-decoration:none}" +
    ".rc .i{aspect-ratio:1}.rc .t{font-size:12px}.rc .p{font-size:13px}";

  function money(price, locale) {
    if (!price) return "";
    try { return new Intl.NumberFormat(locale || undefined, { style: "currency", currency: price.currency }).format(price.amount / 100); }
    catch (e) { return (price.amount / 100).toFixed(2) + " " + price.currency; }
  }

  function drawRecs(holder, body, el) {
    holder.textContent = "";
    if (!body.items || !body.items.length) return;
    holder.appendChild(h("h3", "", REC_TITLE[body.intent] || REC_TITLE.related));
    var row = h("div", "rs");
    body.items.forEach(function (it) {
      var p = it.product, a = h(el.dataset.tracking ? "a" : "div", "rc");
      a.dataset.product = p.id;
      if (el.dataset.tracking) {
        a.href = API + "/r/" + encodeURIComponent(el.dataset.tracking) + "/" + encodeURIComponent(p.id);
        a.target = "_blank";
        a.rel = "sponsored noopener";
      }
      a.appendChild(image({ title: p.title, image: p.image && p.image.url }));
      a.appendChild(h("div", "t", p.title));
      a.appendChild(h("div", "p", money(p.price, el.dataset.locale || navigator.language)));
      row.appendChild(a);
    });
    holder.appendChild(row);
  }

  sections.push(function (box, item, ctx) {
    var el = ctx.el, intent = el.dataset.recommendations;
    if (!intent || !item || !item.id) return;
    var holder = h("section", "r");
    holder.setAttribute("part", "recommendations");
    box.appendChild(holder);
    // The card re-renders on every poll; the strip is fetched at most every 5 minutes.
    var st = el.__edgeshelfRecs || (el.__edgeshelfRecs = {});
    if (st.body && Date.now() - st.at < 300000) return drawRecs(holder, st.body, el);
    var limit = String(Math.min(Math.max(+el.dataset.recommendationsLimit || 4, 1), 20));
    fetch(ctx.url("/v1/products/" + encodeURIComponent(item.id) + "/recommendations", { intent: intent, limit: limit }), { credentials: "omit" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (body) { st.body = body; st.at = Date.now(); drawRecs(holder, body, el); }, function () { /* no strip: the card stands alone */ });
  });

  W.EdgeShelf = { version: "1", scan: scan, mount: mount, addSection: function (fn) { sections.push(fn); } };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
})();
