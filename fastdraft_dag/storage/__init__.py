"""Where artifacts live on disk and how they are written: atomically, with manifests."""
