# sdcontainer: build the man pages, install into a self-contained venv.
#
#   make                    man pages (man/*.N from man/*.N.scd, with scdoc)
#   make build-deps         Debian packages needed to build (pystemd compiles against libsystemd)
#   make wheels             fill $(WHEELHOUSE) with wheels of every dependency (needs PyPI)
#   make install            venv in $(PREFIX)/lib/sdcontainer/venv, offline from $(WHEELHOUSE)
#                           when it holds wheels; honours DESTDIR and PREFIX
#   make uninstall
#
# The source tree may be read-only during `make install` (the integration testbed binds it in
# read-only): everything is built under $(BUILDDIR), which can be put elsewhere, e.g.
# `make install BUILDDIR=/tmp/sdcontainer-build`.

PREFIX ?= /usr/local
DESTDIR ?=
# never a pyenv shim: systemd runs what this venv holds, at every boot
PYTHON ?= /usr/bin/python3
SCDOC ?= scdoc
BUILDDIR ?= build
WHEELHOUSE ?= $(CURDIR)/build/wheels

LIBDIR = $(PREFIX)/lib/sdcontainer
VENV = $(LIBDIR)/venv
PYTHON_VERSION = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV_SITE = $(VENV)/lib/python$(PYTHON_VERSION)/site-packages
# the generator and the launcher are scripts with the venv's interpreter and packages named
SUBST = sed -e 's|@VENV_PYTHON@|$(VENV)/bin/python3|' -e 's|@VENV_SITE@|$(VENV_SITE)|'
BINDIR = $(PREFIX)/bin
GENERATORDIR = $(PREFIX)/lib/systemd/system-generators
UNITDIR = $(PREFIX)/lib/systemd/system
MANDIR = $(PREFIX)/share/man

MAN_SRC = $(wildcard man/*.[0-9].scd)
MAN = $(MAN_SRC:.scd=)
UNITS = $(filter %.service %.socket %.slice %.target %.timer %.path %.mount %.network %.netdev,\
          $(wildcard units/*))
TOP_FILES = pyproject.toml $(wildcard README.md LICENSE*)
PACKAGE_FILES = $(wildcard sdcontainer/*.py sdcontainer/*/*.py sdcontainer/py.typed)

# offline from the wheelhouse when it has wheels; then also ignore the machine's pip config
HAVE_WHEELS = $(wildcard $(WHEELHOUSE)/*.whl)
# The venv gets no pip of its own (ensurepip costs 3 of install's 5 s): the host's pip (>= 22.3)
# installs into it with --python.
PIP_INSTALL = $(if $(HAVE_WHEELS),PIP_CONFIG_FILE=/dev/null) \
	$(PYTHON) -m pip --python $(DESTDIR)$(VENV)/bin/python3 install --disable-pip-version-check \
	--no-cache-dir --no-warn-script-location --no-compile \
	$(if $(HAVE_WHEELS),--no-index --find-links $(WHEELHOUSE))

BUILD_DEPS = python3-venv python3-pip python3-dev gcc pkg-config libsystemd-dev scdoc

.PHONY: all man install install-venv install-bin install-generator install-units install-man \
	uninstall wheels build-deps clean distclean bench

all: man

# sdcontainer beside the plain-unit floor and podman, in one testbed (see bench/run.py)
bench:
	tools/bench

man: $(MAN)

man/%: man/%.scd
	$(SCDOC) < $< > $@.tmp
	mv $@.tmp $@

# --- the Python package -------------------------------------------------------------------

# A copy of the sources, so that setuptools' in-tree build never writes into the checkout.
# Only the package's own files: __pycache__ may change under a concurrent test run.
$(BUILDDIR)/src: FORCE
	rm -rf $@
	mkdir -p $@
	cp $(TOP_FILES) $@/
	cp --parents $(PACKAGE_FILES) $@/

# a no-op while the wheelhouse is newer than pyproject.toml (remove it to force a rebuild)
wheels: $(WHEELHOUSE)/.stamp

$(WHEELHOUSE)/.stamp: pyproject.toml
	$(MAKE) $(BUILDDIR)/src
	mkdir -p $(WHEELHOUSE)
	$(PYTHON) -m pip wheel --disable-pip-version-check --wheel-dir $(WHEELHOUSE) $(BUILDDIR)/src setuptools wheel
	rm -f $(WHEELHOUSE)/sdcontainer-*.whl
	touch $@

build-deps:
	apt-get install -y --no-install-recommends $(BUILD_DEPS)

install: install-venv install-bin install-generator install-units install-man

install-venv: $(BUILDDIR)/src
	rm -rf $(DESTDIR)$(VENV)
	$(PYTHON) -m venv --without-pip $(DESTDIR)$(VENV)
	$(PIP_INSTALL) $(BUILDDIR)/src
ifneq ($(DESTDIR),)
	# the venv will live at $(VENV), not under DESTDIR: fix its scripts' shebangs and paths
	grep -rlF '$(DESTDIR)$(VENV)' $(DESTDIR)$(VENV)/bin $(DESTDIR)$(VENV)/pyvenv.cfg \
		| xargs -r sed -i 's|$(DESTDIR)$(VENV)|$(VENV)|g'
	$(PYTHON) -m compileall -q -f -j0 -s '$(DESTDIR)' $(DESTDIR)$(VENV)/lib
else
	$(PYTHON) -m compileall -q -j0 $(DESTDIR)$(VENV)/lib
endif

install-bin:
	install -d $(DESTDIR)$(BINDIR)
	ln -sfn $(VENV)/bin/sdcontainer $(DESTDIR)$(BINDIR)/sdcontainer
	$(SUBST) libexec/sdcontainer-launcher > $(DESTDIR)$(VENV)/bin/sdcontainer-launcher.tmp
	chmod 755 $(DESTDIR)$(VENV)/bin/sdcontainer-launcher.tmp
	mv $(DESTDIR)$(VENV)/bin/sdcontainer-launcher.tmp $(DESTDIR)$(VENV)/bin/sdcontainer-launcher

install-generator:
	install -d $(DESTDIR)$(GENERATORDIR)
	$(SUBST) generators/sdcontainer-generator > $(DESTDIR)$(GENERATORDIR)/sdcontainer-generator.tmp
	chmod 755 $(DESTDIR)$(GENERATORDIR)/sdcontainer-generator.tmp
	mv $(DESTDIR)$(GENERATORDIR)/sdcontainer-generator.tmp $(DESTDIR)$(GENERATORDIR)/sdcontainer-generator

install-units:
ifneq ($(UNITS),)
	install -d $(DESTDIR)$(UNITDIR)
	@set -e; for unit in $(UNITS); do \
		sed -e 's|@BINDIR@|$(BINDIR)|g' $$unit > $(DESTDIR)$(UNITDIR)/$$(basename $$unit).tmp; \
		chmod 644 $(DESTDIR)$(UNITDIR)/$$(basename $$unit).tmp; \
		mv $(DESTDIR)$(UNITDIR)/$$(basename $$unit).tmp $(DESTDIR)$(UNITDIR)/$$(basename $$unit); \
	done
endif

# straight from the sources, so that a read-only checkout needs no `make` beforehand
install-man:
	@set -e; for src in $(MAN_SRC); do \
		page=$$(basename $$src .scd); sec=$${page##*.}; \
		echo "install $$page -> $(DESTDIR)$(MANDIR)/man$$sec/"; \
		install -d $(DESTDIR)$(MANDIR)/man$$sec; \
		$(SCDOC) < $$src > $(DESTDIR)$(MANDIR)/man$$sec/$$page; \
		chmod 644 $(DESTDIR)$(MANDIR)/man$$sec/$$page; \
	done

uninstall:
	rm -rf $(DESTDIR)$(LIBDIR)
	rm -f $(DESTDIR)$(BINDIR)/sdcontainer
	rm -f $(DESTDIR)$(GENERATORDIR)/sdcontainer-generator
ifneq ($(UNITS),)
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS)))
endif
	@for src in $(MAN_SRC); do \
		page=$$(basename $$src .scd); sec=$${page##*.}; \
		echo "rm -f $(DESTDIR)$(MANDIR)/man$$sec/$$page"; rm -f $(DESTDIR)$(MANDIR)/man$$sec/$$page; \
	done

clean:
	rm -f $(MAN) man/*.tmp
	rm -rf $(BUILDDIR)/src

distclean: clean
	rm -rf $(BUILDDIR)

FORCE:
