//! A "billion laughs" document is refused with bounded memory: a counting allocator (this test binary's own
//! global allocator) measures the peak bytes live while `files::yaml` reads hostile documents. No timing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use fleetaudit::files::yaml::{self, Limits, YamlErrorKind};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// One measurement at a time: the test harness runs tests on several threads.
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak bytes allocated above what was live before, while `f` runs.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed) - before)
}

fn laughs(levels: u8, fanout: usize) -> String {
    let mut text = format!("a: &a [{}]\n", vec!["lol"; fanout].join(", "));
    for i in 0..levels {
        let (name, prev) = ((b'b' + i) as char, (b'a' + i) as char);
        text.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{prev}"); fanout].join(", ")));
    }
    text
}

#[test]
fn billion_laughs_is_refused_in_bounded_memory() {
    let _one = SERIAL.lock().unwrap();
    // 9 levels of 10 aliases: 10^9 strings if expanded (tens of GB).
    let text = laughs(9, 10);
    let (result, peak) = peak_of(|| yaml::parse("bomb.yaml", &text, &Limits::CONFIG));
    let e = result.unwrap_err();
    assert_eq!(e.kind, YamlErrorKind::TooManyNodes, "{e}");
    assert!(e.to_string().starts_with("bomb.yaml:4:"), "refused at the first level past 10,000 nodes: {e}");
    // 10,000 copied nodes of ~100 bytes, twice (tree and anchor table), is ~2 MB: 8 MiB leaves room.
    eprintln!("billion laughs refused with a peak of {peak} bytes");
    assert!(peak < 8 << 20, "peak {peak} bytes while refusing a billion laughs");

    // The same bomb in flow style and wider: still refused by the alias budget, memory still bounded.
    let text = laughs(6, 50);
    let (result, peak) = peak_of(|| yaml::parse("bomb.yaml", &text, &Limits::CONFIG));
    assert_eq!(result.unwrap_err().kind, YamlErrorKind::TooManyNodes);
    assert!(peak < 8 << 20, "peak {peak} bytes");
}

#[test]
fn a_large_legitimate_file_costs_a_bounded_multiple_of_its_size() {
    let _one = SERIAL.lock().unwrap();
    // A 1 MiB config (the per-file limit) of 20,000 keys: the tree costs a bounded multiple of the text.
    let text: String = (0..20_000).map(|i| format!("key{i:05}: value-{i:032}\n")).collect();
    assert!(text.len() < 1 << 20);
    let (result, peak) = peak_of(|| yaml::parse("big.yaml", &text, &Limits::CONFIG).map(|d| d.root));
    let root = result.unwrap();
    assert_eq!(root.as_map().map(<[_]>::len), Some(20_000));
    eprintln!("{} bytes of YAML read with a peak of {peak} bytes", text.len());
    assert!(peak < 16 * text.len(), "peak {peak} bytes for {} bytes of YAML", text.len());
}
