"""``cadence bench``: the benchmarks behind the README's figures, and a stand-in camera; nothing else imports them."""
