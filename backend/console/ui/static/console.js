// The console works without this script; it adds confirmations before
// destructive actions and a "select all" box to lists.
document.addEventListener("submit", function (e) {
  var msg = e.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) e.preventDefault();
});
document.addEventListener("change", function (e) {
  var name = e.target.getAttribute("data-select-all");
  if (!name) return;
  var boxes = e.target.form.querySelectorAll('input[type=checkbox][name="' + name + '"]');
  for (var i = 0; i < boxes.length; i++) boxes[i].checked = e.target.checked;
});
