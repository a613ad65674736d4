// Sortable tables: click a header to sort by that column; undefined values always sort last.
// Each cell carries its sort key in data-v (absent when the value is undefined).
(function () {
  "use strict";
  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var numeric = th.dataset.type !== "text";
    rows.sort(function (a, b) {
      var x = a.cells[index].dataset.v, y = b.cells[index].dataset.v;
      if (x === undefined || y === undefined) { return (x === undefined) - (y === undefined); }
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener("click", function () { sortBy(table, i, th); });
    });
  });
  // Mark each plot the browser actually laid out with a non-empty extent, and the page as ready
  // once everything above ran: the browser test reads both from the DOM.
  document.querySelectorAll("svg.plot").forEach(function (plot) {
    var box = plot.getBBox();
    if (box.width > 0 && box.height > 0) { plot.dataset.drawn = "yes"; }
  });
  document.body.dataset.ready = "yes";
})();
