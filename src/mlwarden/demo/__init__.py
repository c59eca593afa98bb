"""``mlwarden demo``: the daemon on embedded defaults watching a simulated BTC/USDT market."""
