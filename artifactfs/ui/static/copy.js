// The copy buttons of "use this version": the line goes to the clipboard; where the browser refuses
// (not a secure context, no permission), the line is selected for Ctrl+C instead.
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("button.copy");
  if (!button) return;
  var code = document.getElementById(button.dataset.for);
  var text = code.textContent;
  function selected() {
    var range = document.createRange();
    range.selectNodeContents(code);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "press Ctrl+C";
  }
  if (!navigator.clipboard) { selected(); return; }
  navigator.clipboard.writeText(text).then(function () {
    button.textContent = "copied";
    setTimeout(function () { button.textContent = "copy"; }, 1500);
  }, selected);
});
