"""Reports from run directories: tidy results in, tables / figures / report files out."""
