# The two entry points; README.md describes both. Each installs what it needs first.
.PHONY: demo test
demo:
	bash examples/demo.sh
test:
	bash tests/run-all.sh
