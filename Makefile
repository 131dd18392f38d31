# l4lb: common tasks. Targets that touch namespaces need root (CI is root).
CARGO ?= cargo
# insta must never write .snap.new files in CI or under sudo (which drops CI).
export INSTA_UPDATE ?= no
export CI ?= true

.PHONY: deps bench-deps test-deps build run test unit bench clean lint fuzz

## deps: install what a bare Debian machine lacks (iproute2, iptables, ethtool)
deps:
	@missing=""; \
	for t in ip:iproute2 iptables:iptables ethtool:ethtool ss:iproute2; do \
	  command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

## bench-deps: the peers `l4lb bench` compares against (HAProxy, nginx stream, iperf3, wrk)
bench-deps: deps
	@missing=""; \
	for t in haproxy:haproxy nginx:nginx iperf3:iperf3 wrk:wrk; do \
	  command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; \
	done; \
	[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing="$$missing libnginx-mod-stream"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

## test-deps: what the peer tests add: headless Chromium renders index.html (tests/peers.rs)
test-deps: bench-deps
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing: chromium"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

build:
	$(CARGO) build --release --workspace

## run: the main job, every scenario against both balancers, with a report
run: deps build
	./target/release/l4lb run scenarios/ --report-dir target/l4lb-report

## test: unit tests, namespace tests, the scenario suite and the peers (root)
test: deps test-deps
	$(CARGO) test --workspace --no-fail-fast

## unit: only tests that need no root
unit:
	L4LB_SKIP_ROOT_TESTS=1 $(CARGO) test --workspace

bench: bench-deps build
	./target/release/l4lb bench --out target/l4lb-bench

## fuzz: every fuzz target for FUZZ_SECONDS each (nightly + cargo-fuzz; seeds from the suite)
FUZZ_SECONDS ?= 60
fuzz:
	cd fuzz && mkdir -p corpus/parse_rewrite corpus/scenario_parse && \
	cargo +nightly fuzz run parse_rewrite corpus/parse_rewrite seeds/parse_rewrite -- -max_total_time=$(FUZZ_SECONDS) && \
	cargo +nightly fuzz run scenario_parse corpus/scenario_parse ../scenarios ../tests/bad-scenarios \
	  -- -max_total_time=$(FUZZ_SECONDS) -max_len=8192

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace

clean:
	-./target/release/l4lb cleanup 2>/dev/null || ./target/debug/l4lb cleanup 2>/dev/null
	$(CARGO) clean
