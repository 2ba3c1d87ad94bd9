def test_legacy_per_segment_encoders_overlap_is_left_out_and_counted(tmp_path: Path) -> None:
    """Evidence sealed with one AAC encoder per segment: each new segment's priming frame
    overlaps the previous segment's tail; the export keeps one monotonic audio track."""
    frames, chunks = h264_frames(60), mic_chunks(2.0)
    legacy: list[SegmentInput] = []
    for k in range(2):  # a fresh Segmenter (so a fresh encoder) per one-second segment
        seg = Segmenter(WIDTH, HEIGHT, 1.0, 60, AudioTrack(RATE, 1))
        lo, hi = k * 1_000_000, (k + 1) * 1_000_000
        units = interleave(
            seg,
            [f for f in frames if lo <= f.pts_us < hi],
            [c for c in chunks if lo <= c.pts_us < hi],
        )
        legacy += segments(units)
    result = remux_to_mp4(legacy, tmp_path / "legacy.mp4", audio=DECL)
    assert result.dropped_overlap > 0
    with av.open(str(tmp_path / "legacy.mp4")) as c:
        dts = [p.dts for p in c.demux(audio=0) if p.size and p.dts is not None]
    assert all(b > a for a, b in itertools.pairwise(dts))
    assert result.video_max_step_us == 33_333
