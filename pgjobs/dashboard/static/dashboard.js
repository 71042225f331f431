// The dashboard's only script besides htmx: the theme toggle (auto -> dark -> light), kept in
// localStorage. No inline script anywhere: the Content-Security-Policy allows 'self' only.
(function () {
  var KEY = "pgjobs-theme";
  function apply(theme) {
    if (theme === "dark" || theme === "light") document.documentElement.setAttribute("data-theme", theme);
    else document.documentElement.removeAttribute("data-theme");
  }
  apply(localStorage.getItem(KEY));
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    button.addEventListener("click", function () {
      var next = {"": "dark", dark: "light", light: ""}[localStorage.getItem(KEY) || ""];
      if (next) localStorage.setItem(KEY, next); else localStorage.removeItem(KEY);
      apply(next);
    });
  });
})();
