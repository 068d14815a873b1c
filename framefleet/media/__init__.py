"""Media: probing, ffmpeg command building, progress parsing, quality metrics and the ffmpeg process edge."""
