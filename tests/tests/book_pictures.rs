//! The book's pictures (book/src/pictures) must reach the reader: each is
//! used by a chapter and says what it shows in its alt text, each is a
//! well-formed SVG with an opaque background (an SVG in an `<img>` does not
//! take the page's colours, so it must be readable on its own in every
//! theme) and no tiny text, and each loads on its page of the built book in
//! a real browser.
//!
//! The browser is headless Chromium (Debian package `chromium`), run with
//! `--no-sandbox` because CI runs as root; it only ever opens our own static
//! files. The built book, the pages the browser checked and a screenshot of
//! every picture in its chapter stay in cargo's target/tmp/book-pictures
//! after the run, for a look when something fails.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_tests::engines::{output_within, shell_line};
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

const BOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../book");
/// Out of the repository, and kept after the run (see the top).
const WORK: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/book-pictures");
/// The smallest text a picture may show on a page, in CSS pixels.
const MIN_TEXT_PX: f64 = 12.0;
/// Alt text must describe the picture, not just name it.
const MIN_ALT_CHARS: usize = 40;
/// How the pages are looked at: a laptop's window, sidebar open.
const WINDOW: &str = "--window-size=1280,1000";
/// The mdBook theme of the screenshots: a dark one, where a picture without
/// a background of its own would vanish.
const SCREENSHOT_THEME: &str = "coal";

/// `![alt](target)` in a chapter.
struct ImageLine {
    chapter: String,
    line: usize,
    alt: String,
    target: String,
}

#[test]
fn every_picture_is_used_and_described() {
    let src = Path::new(BOOK).join("src");
    let images = image_lines(&src);
    let mut failures = Vec::new();
    for image in &images {
        let at = format!("{}:{}", image.chapter, image.line);
        if !src.join(&image.target).is_file() {
            failures.push(format!(
                "{at}: the picture {} does not exist in book/src",
                image.target
            ));
        }
        if image.alt.trim().chars().count() < MIN_ALT_CHARS {
            failures.push(format!(
                "{at}: the alt text of {} is {:?}; say in a sentence what the picture shows \
                 (at least {MIN_ALT_CHARS} characters), for readers who can't see it",
                image.target, image.alt
            ));
        }
    }
    for picture in pictures() {
        let name = file_name(&picture);
        let target = format!("pictures/{name}");
        if !images.iter().any(|image| image.target == target) {
            failures.push(format!(
                "book/src/{target} is not shown by any chapter: add `![what it shows]({target})` \
                 where the text explains it, or remove the file"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the book's pictures:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn pictures_load_in_a_browser() {
    let chromium = program(
        "chromium",
        "install the Debian package chromium (apt-get install chromium)",
    );
    let mdbook = program(
        "mdbook",
        "install it as scripts/test does: cargo install mdbook --version 0.5.4 --locked \
         --no-default-features --features search",
    );
    let work = Path::new(WORK);
    // One run at a time uses the directory (several engineers may test in
    // one checkout); a second waits here until the first is done.
    fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let lock = fs::File::create(format!("{WORK}.lock")).unwrap();
    let _lock = Flock::lock(lock, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("lock {WORK}.lock: {e}"));
    if work.exists() {
        fs::remove_dir_all(work).unwrap();
    }
    for dir in ["book", "shots", "browser"] {
        fs::create_dir_all(work.join(dir)).unwrap();
    }
    let site = work.join("book");
    let built = run(Command::new(&mdbook)
        .arg("build")
        .arg(BOOK)
        .arg("-d")
        .arg(&site));
    assert!(
        built.status.success(),
        "mdbook build failed:\n{}",
        built.stderr
    );
    println!("the book, built: {}", site.display());
    let browser = Browser::new(chromium, work.join("browser"));
    let mut failures = Vec::new();

    // The files themselves: well-formed, opaque, their smallest text.
    let svgs = svg_checks(&browser, work, &mut failures);

    // Every page that shows a picture, as a reader's browser shows it.
    let pages = pages_with_pictures(&site);
    let reports = in_parallel(&pages, |page| browser.results(&checked_copy(page)));
    let mut shown = 0;
    let mut screenshots = Vec::new();
    for (page, report) in pages.iter().zip(reports) {
        let page_name = file_name(page);
        let Value::Array(checked) = report else {
            panic!("{page_name}: the check script said {report}");
        };
        let html = fs::read_to_string(page).unwrap();
        if checked.len() != html.matches("<img").count() {
            failures.push(format!(
                "{page_name}: the page has {} <img> elements, the browser reported {}",
                html.matches("<img").count(),
                checked.len()
            ));
        }
        let mut visible = 0;
        let mut broken = Vec::new();
        for image in &checked {
            let src = image["src"].as_str().unwrap_or_default();
            let complete = image["complete"].as_bool().unwrap_or(false);
            let width = image["natural_width"].as_f64().unwrap_or(0.0);
            if !complete || width == 0.0 {
                if broken.contains(&src) {
                    continue; // mdBook shows each picture twice (the second on a click)
                }
                broken.push(src);
                failures.push(format!(
                    "{page_name}: {src} did not load (complete: {complete}, natural width: \
                     {width}): is the path right, and is the file a valid SVG?"
                ));
                continue;
            }
            if image["alt"].as_str().unwrap_or_default().trim().is_empty() {
                failures.push(format!("{page_name}: {src} has no alt text"));
            }
            let shown_width = image["shown_width"].as_f64().unwrap_or(0.0);
            if shown_width == 0.0 {
                continue; // mdBook's hidden copy, shown when the picture is clicked
            }
            let name = src.rsplit('/').next().unwrap_or(src);
            if let Some(min) = svgs.get(name).and_then(|svg| svg["min_font_px"].as_f64()) {
                let on_page = min * shown_width / width;
                if on_page < MIN_TEXT_PX {
                    failures.push(format!(
                        "{page_name}: {src} is shown {shown_width:.0} px wide of its {width}, so \
                         its smallest text ({:?}) is {on_page:.1} px on the page, below \
                         {MIN_TEXT_PX} px: make the text larger or the picture narrower \
                         (the column is about 750 px)",
                        svg_text(&svgs[name])
                    ));
                }
            }
            screenshots.push(Screenshot {
                page: page.clone(),
                index: visible,
                what: format!("{src} on {page_name}"),
                file: work
                    .join("shots")
                    .join(format!("{}-{visible}.png", stem(page))),
            });
            visible += 1;
            shown += 1;
        }
    }
    let said = in_parallel(&screenshots, |shot| browser.screenshot(shot));
    for (shot, said) in screenshots.iter().zip(said) {
        if fs::metadata(&shot.file).map(|m| m.len()).unwrap_or(0) == 0 {
            failures.push(format!(
                "no screenshot of {} was written; the browser said:\n{said}",
                shot.what
            ));
        } else {
            println!(
                "screenshot of {} ({SCREENSHOT_THEME} theme): {}",
                shot.what,
                shot.file.display()
            );
        }
    }
    if shown < svgs.len() {
        failures.push(format!(
            "the built book shows {shown} pictures, but book/src/pictures has {}",
            svgs.len()
        ));
    }
    assert!(
        failures.is_empty(),
        "the book's pictures in a browser (the built book and screenshots are in {}):\n  {}",
        work.display(),
        failures.join("\n  ")
    );
}

/// The SVG files of book/src/pictures, in order.
fn pictures() -> Vec<PathBuf> {
    let dir = Path::new(BOOK).join("src/pictures");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "svg"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no pictures in {}", dir.display());
    files
}

/// Every `![alt](target)` outside code blocks in the chapters.
fn image_lines(src: &Path) -> Vec<ImageLine> {
    let mut chapters: Vec<PathBuf> = fs::read_dir(src)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    chapters.sort();
    let mut images = Vec::new();
    for chapter in chapters {
        let text = fs::read_to_string(&chapter).unwrap();
        let mut in_code = false;
        for (index, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
            }
            if in_code {
                continue;
            }
            let mut rest = line;
            while let Some(start) = rest.find("![") {
                let after = &rest[start + 2..];
                let Some(middle) = after.find("](") else {
                    break;
                };
                let tail = &after[middle + 2..];
                let Some(end) = tail.find(')') else {
                    break;
                };
                images.push(ImageLine {
                    chapter: format!("book/src/{}", file_name(&chapter)),
                    line: index + 1,
                    alt: after[..middle].to_string(),
                    target: tail[..end].to_string(),
                });
                rest = &tail[end + 1..];
            }
        }
    }
    images
}

/// The built pages that show pictures. print.html repeats every chapter,
/// index.html the first one.
fn pages_with_pictures(site: &Path) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = fs::read_dir(site)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "html"))
        .filter(|path| !["print.html", "index.html"].contains(&file_name(path).as_str()))
        .filter(|path| !file_name(path).ends_with(".pictures-check.html"))
        .filter(|path| fs::read_to_string(path).unwrap().contains("<img"))
        .collect();
    pages.sort();
    assert!(
        !pages.is_empty(),
        "no page of {} shows a picture",
        site.display()
    );
    pages
}

/// Each picture file, parsed and drawn by the browser: well-formed XML, an
/// `<svg>` with a size, every pixel opaque, no text off the canvas. Returns
/// what it measured, by file name (`min_font_px`, `smallest_text`).
fn svg_checks(
    browser: &Browser,
    work: &Path,
    failures: &mut Vec<String>,
) -> BTreeMap<String, Value> {
    let files: BTreeMap<String, String> = pictures()
        .iter()
        .map(|path| (file_name(path), fs::read_to_string(path).unwrap()))
        .collect();
    // Into a <script> as JSON; "</" would end the script early.
    let data = serde_json::to_string(&files).unwrap().replace("</", "<\\/");
    let page = work.join("pictures-check.html");
    fs::write(&page, SVG_CHECK_PAGE.replace("SVG_FILES", &data)).unwrap();
    let results = browser.results(&page);
    let mut measured = BTreeMap::new();
    for result in results.as_array().into_iter().flatten() {
        let name = result["name"].as_str().unwrap_or_default().to_string();
        for error in result["errors"].as_array().into_iter().flatten() {
            failures.push(format!(
                "book/src/pictures/{name}: {}",
                error.as_str().unwrap_or_default()
            ));
        }
        measured.insert(name, result.clone());
    }
    for name in files.keys() {
        if !measured.contains_key(name) {
            failures.push(format!(
                "book/src/pictures/{name}: the browser did not check it"
            ));
        }
    }
    measured
}

fn svg_text(measured: &Value) -> &str {
    measured["smallest_text"].as_str().unwrap_or_default()
}

/// `ch02.html` -> `ch02.pictures-check.html` beside it (so that relative
/// paths stay right), with [`PAGE_CHECK_SCRIPT`] at the end of its body. The
/// script reports on each `<img>`: `src`, `alt`, `complete`,
/// `natural_width`, `shown_width`.
fn checked_copy(page: &Path) -> PathBuf {
    let html = fs::read_to_string(page).unwrap();
    let end = html
        .rfind("</body>")
        .unwrap_or_else(|| panic!("{}: no </body>", page.display()));
    let copy = page.with_file_name(format!("{}.pictures-check.html", stem(page)));
    if !copy.exists() {
        fs::write(
            &copy,
            format!("{}{PAGE_CHECK_SCRIPT}{}", &html[..end], &html[end..]),
        )
        .unwrap();
    }
    copy
}

/// Headless Chromium, with its profiles, cache and temp files in one
/// directory of ours.
struct Browser {
    program: PathBuf,
    home: PathBuf,
    /// Each run gets a profile of its own: Chromium locks its profile, and
    /// the screenshots are taken several at a time.
    runs: AtomicUsize,
}

/// A picture to take a screenshot of.
struct Screenshot {
    page: PathBuf,
    index: usize,
    what: String,
    file: PathBuf,
}

impl Browser {
    fn new(program: PathBuf, home: PathBuf) -> Browser {
        Browser {
            program,
            home,
            runs: AtomicUsize::new(0),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                WINDOW,
            ])
            .arg(format!(
                "--user-data-dir={}",
                self.home
                    .join(format!(
                        "profile-{}",
                        self.runs.fetch_add(1, Ordering::Relaxed)
                    ))
                    .display()
            ))
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("TMPDIR", &self.home);
        command
    }

    /// Open `page` and return the JSON its script left in
    /// `<pre id="berth-pictures">`.
    fn results(&self, page: &Path) -> Value {
        let mut command = self.command();
        command.arg("--dump-dom").arg(url(page, ""));
        let out = run(&mut command);
        // <pre id="berth-pictures" hidden="">JSON</pre>
        let found = out
            .stdout
            .find("<pre id=\"berth-pictures\"")
            .and_then(|start| {
                let rest = &out.stdout[start..];
                let open = rest.find('>')? + 1;
                Some(&rest[open..open + rest[open..].find("</pre>")?])
            });
        let Some(json) = found else {
            panic!(
                "{}: the check script left no result: did the page load? {} wrote {} bytes of \
                 page and said:\n{}",
                page.display(),
                shell_line(&command),
                out.stdout.len(),
                out.stderr
            );
        };
        // --dump-dom writes the text as HTML.
        let json = json
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        serde_json::from_str(&json).unwrap_or_else(|e| {
            panic!("{}: the check script's result: {e}\n{json}", page.display())
        })
    }

    /// A screenshot of a picture alone in its chapter's column, in
    /// [`SCREENSHOT_THEME`]. What the browser said.
    fn screenshot(&self, shot: &Screenshot) -> String {
        let mut command = self.command();
        command
            .arg(format!("--screenshot={}", shot.file.display()))
            .arg(url(
                &checked_copy(&shot.page),
                &format!("#berth-picture-{}-{SCREENSHOT_THEME}", shot.index),
            ));
        run(&mut command).stderr
    }
}

/// `f` of each item, in order, a few at a time: each is a browser run, and
/// one at a time they take long.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else {
                        break;
                    };
                    let result = f(item);
                    done.lock().unwrap().push((index, result));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}

fn url(page: &Path, fragment: &str) -> String {
    format!(
        "file://{}{fragment}",
        page.canonicalize().unwrap().display()
    )
}

struct Ran {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

/// Run a command for at most a minute; a browser that hangs fails the test.
fn run(command: &mut Command) -> Ran {
    let out = output_within(command, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    Ran {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A program from PATH, or a failure that says how to install it. Never a
/// skip: CI must have it.
fn program(name: &str, install: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{name} is not in PATH, and this test needs it: {install}"))
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// Added to a chapter's page. On load it reports every `<img>` into
/// `<pre id="berth-pictures">`, which --dump-dom prints. With
/// `#berth-picture-N-THEME` it first leaves only the chapter's title and its
/// Nth visible picture in the page (a headless screenshot can't scroll),
/// in that theme.
const PAGE_CHECK_SCRIPT: &str = r#"<script>
(() => {
  const wanted = location.hash.match(/^#berth-picture-(\d+)-([a-z]+)$/);
  if (wanted) {
    const html = document.documentElement;
    html.classList.remove('light', 'rust', 'coal', 'navy', 'ayu');
    html.classList.add(wanted[2]);
    const main = document.querySelector('main');
    const pictures = [...main.querySelectorAll('img')].filter(img => !img.closest('.img-wrapper'));
    const picture = pictures[Number(wanted[1])];
    const block = picture && (picture.closest('main > *') || picture);
    for (const child of [...main.children]) {
      if (child !== block && child.tagName !== 'H1') child.remove();
    }
  }
  window.addEventListener('load', () => {
    const images = [...document.querySelectorAll('img')].map(img => ({
      src: img.getAttribute('src'),
      alt: img.getAttribute('alt') || '',
      complete: img.complete,
      natural_width: img.naturalWidth,
      shown_width: img.getBoundingClientRect().width,
    }));
    const out = document.createElement('pre');
    out.id = 'berth-pictures';
    out.hidden = true;
    out.textContent = JSON.stringify(images);
    document.body.appendChild(out);
  });
})();
</script>
"#;

/// A page that checks every picture file. The files come in as JSON in
/// place of SVG_FILES. Each is loaded as an image (from a data: URL, which
/// the page may read back from a canvas) before the load event.
const SVG_CHECK_PAGE: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>berth: the book's pictures</title></head>
<body style="margin: 0; font-size: 16px">
<script>
const files = SVG_FILES;
const images = {};
for (const [name, text] of Object.entries(files)) {
  const img = new Image();
  img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(text);
  images[name] = img;
  document.body.appendChild(img);
}

function check(name, text) {
  const result = { name, errors: [], min_font_px: null, smallest_text: null };
  const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
  const error = doc.querySelector('parsererror');
  if (error) {
    // Chromium wraps libxml2's message ("error on line 3 at column 5: ...") in prose.
    const message = (error.querySelector('div') || error).textContent;
    result.errors.push('not well-formed XML: ' + message.replace(/\s+/g, ' ').trim());
    return result;
  }
  const root = doc.documentElement;
  if (root.namespaceURI !== 'http://www.w3.org/2000/svg' || root.localName !== 'svg') {
    result.errors.push('the top element is not <svg xmlns="http://www.w3.org/2000/svg">');
    return result;
  }
  for (const attribute of ['width', 'height', 'viewBox']) {
    if (!root.hasAttribute(attribute)) {
      result.errors.push(`the <svg> has no ${attribute}: give it width, height and viewBox, so that it has a size in a page`);
    }
  }
  // Text sizes (in the image's pixels, at its natural size) and positions
  // (in its own units), on a copy in this page.
  const holder = document.createElement('div');
  holder.appendChild(document.importNode(root, true));
  document.body.appendChild(holder);
  const svg = holder.firstElementChild;
  const box = svg.viewBox.baseVal;
  const scale = box && box.width ? svg.getBoundingClientRect().width / box.width : 1;
  let smallest = Infinity;
  const walker = document.createTreeWalker(svg, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.data.trim() || node.parentElement.closest('title, desc, style')) continue;
    const px = parseFloat(getComputedStyle(node.parentElement).fontSize) * scale;
    if (px < smallest) {
      smallest = px;
      result.smallest_text = node.data.trim();
    }
  }
  result.min_font_px = Number.isFinite(smallest) ? smallest : null;
  for (const text of svg.querySelectorAll('text')) {
    const b = text.getBBox();
    if (box && (b.x < box.x || b.y < box.y || b.x + b.width > box.x + box.width || b.y + b.height > box.y + box.height)) {
      result.errors.push(`the text "${text.textContent.trim()}" runs off the picture`);
    }
  }
  holder.remove();
  // Opaque everywhere: drawn on a canvas, no pixel may let the page through.
  const img = images[name];
  if (!img.complete || !img.naturalWidth) {
    result.errors.push('the browser cannot draw it as an image');
    return result;
  }
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let clear = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] < 255) clear++;
  if (clear) {
    result.errors.push(`${clear} of its pixels are (partly) transparent: in a dark theme the page shows through; start it with a full-size light <rect>, as the others do`);
  }
  return result;
}

window.addEventListener('load', () => {
  const out = document.createElement('pre');
  out.id = 'berth-pictures';
  out.textContent = JSON.stringify(Object.entries(files).map(([name, text]) => check(name, text)));
  document.body.appendChild(out);
});
</script>
</body></html>
"#;
