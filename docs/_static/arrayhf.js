// Once MathJax has typeset a page:
// - an equation wider than the column is drawn smaller, down to 70%, so that it shows whole, with
//   its number (one wider still scrolls sideways), and again when the window is resized;
// - the equations now take more room than their TeX source did, so the place the browser scrolled
//   to on arrival has moved: scroll once more to the equation the address names (#eq-R4).
const SMALLEST_EQUATION = 0.7;

function fitEquations() {
  for (const block of document.querySelectorAll("div.math")) {
    const column = block.closest(".math-wrapper") || block.parentElement;
    block.style.fontSize = "";
    const ratio = column.clientWidth / block.scrollWidth;
    if (ratio < 1) {
      block.style.fontSize = `${100 * Math.max(SMALLEST_EQUATION, 0.99 * ratio)}%`;
    }
  }
}

window.addEventListener("load", () => {
  if (!window.MathJax || !MathJax.startup) return;
  MathJax.startup.promise.then(() => {
    fitEquations();
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(fitEquations, 100);
    });
    if (!location.hash) return;
    const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (target) target.scrollIntoView({ block: "start" });
  });
});
