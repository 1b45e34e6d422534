// hikkoshi lab: the streaming server is played by /usr/local/bin/hikkoshi-mastodon (node).
