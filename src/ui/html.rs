//! Escaping, formatting and the page shell (style and script, inline).
//!
//! Every string that comes from a run (names, keys, config values, git
//! remotes, error messages) goes through [`esc`] or [`attr`] before it reaches
//! HTML, and through [`url_part`] before it reaches a link.

use std::fmt::Write;

/// Escapes text for an HTML element's content.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Escapes text for a quoted attribute value (the same rules as [`esc`]).
pub(crate) fn attr(s: &str) -> String {
    esc(s)
}

/// Percent-encodes one path segment or query value: everything but
/// `A-Z a-z 0-9 - _ . ~`.
pub(crate) fn url_part(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// A number for people: short, with `nan` and `inf` spelled out.
pub(crate) fn number(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-4) {
        format!("{v:.3e}")
    } else {
        // Five significant digits.
        let magnitude = if v == 0.0 {
            0
        } else {
            v.abs().log10().floor() as i32
        };
        let decimals = (4 - magnitude.clamp(-10, 10)).clamp(0, 9) as usize;
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            &s
        };
        if s == "-0" { "0" } else { s }.to_string()
    }
}

/// The whole page: head with the inline style, the navigation, the part
/// that live updates replace (`<main id="live">`), and the inline script.
pub(crate) fn page(title: &str, before_live: &str, live: &str, nonce: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<link rel=\"icon\" href=\"data:,\"><title>{} · ranklog</title><style>{STYLE}</style></head>\
<body><header><a class=\"home\" href=\"/\">ranklog</a> <span class=\"crumb\">{}</span>\
<span id=\"status\" class=\"status\"></span></header>{before_live}\
<main id=\"live\">{live}</main><script nonce=\"{}\">{SCRIPT}</script></body></html>\n",
        esc(title),
        esc(title),
        attr(nonce),
    )
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:8px 16px;display:flex;gap:12px;align-items:baseline}
header a.home{color:#fff;font-weight:700;text-decoration:none}
header .crumb{color:#c9d1e0}
header .status{margin-left:auto;font-size:12px;color:#9fb0cc}
main,form.filters,section{padding:0 16px}
section{margin-top:10px}
h1{font-size:20px;margin:16px 0 8px;word-break:break-all}
h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;background:#fff;margin:4px 0 12px;font-size:13px}
th,td{padding:3px 10px;border-bottom:1px solid #e4e7ec;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{background:none;font-weight:500;color:#5a6478}
td.val{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-all;max-width:60em}
a{color:#2456b0}
.state{padding:1px 6px;border-radius:8px;font-size:12px}
.state.running{background:#dcebff;color:#174ea6}
.state.finished{background:#dff3e3;color:#1e6b34}
.state.failed,.state.crashed,.state.unreadable{background:#fde2e1;color:#a1201b}
tr.bad td{background:#fff4f3}
tr[data-rank]{cursor:pointer}
tr[data-rank].on td{background:#fff7d6}
.notice{background:#fff4d6;border:1px solid #ecd58b;padding:6px 10px;margin:8px 0;border-radius:4px}
.notice.error{background:#fde2e1;border-color:#f0a8a4}
ul.flags{margin:4px 0 12px;padding-left:20px}
ul.flags li{color:#a1201b}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:12px;margin-bottom:24px}
figure.chart{margin:0;background:#fff;border:1px solid #e4e7ec;padding:6px}
figure.chart figcaption{font-weight:600;font-size:13px;word-break:break-all}
figure.chart svg{width:100%;height:auto;display:block}
svg .frame{fill:none;stroke:#c8ced8}
svg .grid{stroke:#eef0f3}
svg .tick,svg .axis{font-size:10px;fill:#5a6478}
svg .band{fill:#4e79a7;fill-opacity:.16;stroke:none}
svg .line{fill:none;stroke-width:1;stroke-opacity:.85;vector-effect:non-scaling-stroke;cursor:pointer}
svg .line.faint{stroke-opacity:.4}
svg .mean{fill:none;stroke:#111;stroke-width:2.5;vector-effect:non-scaling-stroke}
.charts.hl svg .line{stroke-opacity:.12}
.charts.hl svg .line.on{stroke-opacity:1;stroke-width:2.5}
.legend{margin:4px 0;display:flex;flex-wrap:wrap;gap:4px}
.legend span{border:1px solid #c8ced8;border-radius:8px;padding:0 6px;font-size:12px;cursor:pointer;background:#fff}
.legend span.on{background:#fff7d6;border-color:#d6b23c}
.x-time{display:none}
body.walltime .x-time{display:grid}
body.walltime .x-step{display:none}
form.filters{margin:12px 0;display:flex;gap:12px;align-items:center;flex-wrap:wrap}
.empty{color:#5a6478}
.muted{color:#5a6478}
"#;

/// Live updates and rank highlighting. The part of the page inside
/// `<main id="live">` is fetched again (same URL plus `partial=1`) while the
/// page says it may change (`data-poll="1"`), and swapped in place: the
/// scroll position, the filters, the x-axis choice and the highlighted rank
/// stay as they were.
const SCRIPT: &str = r#"
(function(){
  var live=document.getElementById('live'), status=document.getElementById('status');
  var hl=null, last=live.innerHTML, busy=false;
  function apply(){
    document.querySelectorAll('[data-rank]').forEach(function(e){
      e.classList.toggle('on', hl!==null && e.getAttribute('data-rank')===hl);});
    document.querySelectorAll('.charts').forEach(function(c){c.classList.toggle('hl', hl!==null);});
  }
  document.addEventListener('click', function(ev){
    var t=ev.target.closest ? ev.target.closest('[data-rank]') : null;
    if(!t || ev.target.closest('a')) return;
    var r=t.getAttribute('data-rank'); hl=(hl===r)?null:r; apply();
  });
  document.querySelectorAll('form.filters select').forEach(function(s){
    s.addEventListener('change', function(){ s.form.submit(); });});
  var wt=document.getElementById('walltime');
  if(wt){ wt.addEventListener('change', function(){document.body.classList.toggle('walltime', wt.checked);});
          document.body.classList.toggle('walltime', wt.checked); }
  function polling(){ var p=live.querySelector('[data-poll]'); return p && p.getAttribute('data-poll')==='1'; }
  function poll(){
    if(busy || document.hidden || !polling()) return;
    busy=true;
    var u=new URL(location.href); u.searchParams.set('partial','1');
    fetch(u.toString(), {cache:'no-store'}).then(function(r){
      if(!r.ok) throw new Error('HTTP '+r.status);
      return r.text();
    }).then(function(t){
      if(t!==last){ last=t; live.innerHTML=t; apply(); }
      status.textContent='updated '+new Date().toLocaleTimeString();
    }).catch(function(e){ status.textContent='update failed: '+e.message; })
      .then(function(){ busy=false; });
  }
  setInterval(poll, 2000);
  apply();
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn url_parts_keep_slashes_and_dots_inside_a_segment() {
        assert_eq!(url_part("a/../b c"), "a%2F..%2Fb%20c");
        assert_eq!(url_part("demo-1_x.y"), "demo-1_x.y");
        assert_eq!(url_part("ü"), "%C3%BC");
    }

    #[test]
    fn numbers_and_durations_for_people() {
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NEG_INFINITY), "-inf");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(31778.43132), "31778");
        assert_eq!(number(0.188315), "0.18832");
        assert_eq!(number(25000.0), "25000");
        assert_eq!(number(0.0003), "0.0003");
        assert_eq!(crate::human::duration(185.0), "3m05s");
        assert_eq!(crate::human::duration(f64::NAN), "0.0s");
    }
}
