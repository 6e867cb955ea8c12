use super::*;

#[test]
fn parts_start_at_aligned_offsets_and_cover_the_file() {
    assert_eq!(parts(0, 4), vec![(0, 0)]);
    assert_eq!(parts(1000, 4), vec![(0, 1000)]);
    assert_eq!(parts(PART_ALIGN * 2, 1), vec![(0, PART_ALIGN * 2)]);
    for (size, n) in [
        (16 << 20, 4u8),
        ((16 << 20) + 1, 4),
        (PART_ALIGN * 3 - 1, 16),
        (5 * PART_ALIGN, 2),
    ] {
        let p = parts(size, n);
        assert!(p.len() <= usize::from(n), "{size} {n}: {p:?}");
        assert!(
            p.iter().all(|&(o, l)| o % PART_ALIGN == 0 && l > 0),
            "{p:?}"
        );
        let mut at = 0;
        for &(o, l) in &p {
            assert_eq!(o, at);
            at += l;
        }
        assert_eq!(at, size);
    }
    assert_eq!(parts(16 << 20, 4).len(), 4);
}

#[test]
fn the_direction_follows_the_remote_operand() {
    let ops = |v: &[&str]| {
        v.iter()
            .map(|s| s.parse::<Operand>().unwrap())
            .collect::<Vec<_>>()
    };
    let (p, t) = plan(&ops(&["a", "b", "web-1:/tmp"])).unwrap();
    assert_eq!(t, "web-1");
    assert!(matches!(p, Plan::Up { ref dest, .. } if dest == "/tmp/"));
    let (p, _) = plan(&ops(&["a", "web-1:x"])).unwrap();
    assert!(matches!(p, Plan::Up { ref dest, .. } if dest == "x"));
    let (p, _) = plan(&ops(&["web-1:/a", "web-1:/b", "."])).unwrap();
    assert!(matches!(p, Plan::Down { ref sources, .. } if sources.len() == 2));
    assert!(plan(&ops(&["a", "b"])).is_err());
    assert!(plan(&ops(&["web-1:/a", "web-2:/b"])).is_err());
    assert!(plan(&ops(&["web-1:/a", "web-1:/b"])).is_err());
    assert!(plan(&ops(&["web-1:", "."])).is_err());
}

#[test]
fn sha256_of_a_file_is_hex() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, b"abc").unwrap();
    assert_eq!(
        sha256_file(&p).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn remote_paths_are_relative_to_home_and_never_options() {
    assert_eq!(remote_path("~"), "");
    assert_eq!(remote_path("~/logs/a"), "logs/a");
    assert_eq!(remote_path("-rf"), "./-rf");
    assert_eq!(remote_path("/var/log"), "/var/log");
    assert_eq!(remote_path("~user/x"), "~user/x");
}
