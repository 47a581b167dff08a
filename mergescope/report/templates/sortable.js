// Click a column header of a table.sortable to sort its rows by that column (again to reverse).
// Cells carry their sort value in data-sort: numbers sort as numbers, empty values sort last.
function sortKey(cell) {
  var raw = cell.getAttribute("data-sort");
  if (raw === null || raw === "") { return null; }
  var value = Number(raw);
  return isNaN(value) ? raw : value;
}
function sortTable(table, column, header) {
  var ascending = header.getAttribute("aria-sort") !== "ascending";
  Array.prototype.forEach.call(header.parentNode.cells, function (cell) { cell.removeAttribute("aria-sort"); });
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = sortKey(a.cells[column]), y = sortKey(b.cells[column]);
    if (x === null || y === null) { return (x === null) - (y === null); }
    var order = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return ascending ? order : -order;
  });
  rows.forEach(function (row) { body.appendChild(row); });
}
document.querySelectorAll("table.sortable").forEach(function (table) {
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
    header.tabIndex = 0;
    header.title = "sort by this column";
    header.addEventListener("click", function () { sortTable(table, column, header); });
    header.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { sortTable(table, column, header); }
    });
  });
});
