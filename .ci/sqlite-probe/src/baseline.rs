//! The size baseline: file I/O and formatting like the probe, no SQLite.

fn main() {
    let dir = std::env::temp_dir().join(format!("sqlite-baseline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("rows.txt");
    let rows: String = (0..1000)
        .map(|i| format!("room{}\tana\tmessage {i}\n", i % 7))
        .collect();
    std::fs::write(&path, rows).expect("write");
    let total = std::fs::read_to_string(&path).expect("read").lines().count();
    std::fs::remove_dir_all(&dir).expect("clean up");
    println!("baseline ok: {total} rows on {}", std::env::consts::ARCH);
}
