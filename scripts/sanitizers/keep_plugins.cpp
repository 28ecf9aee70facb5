// Linked into every executable of an ASan build (cmake/CompilerFlags.cmake): dlclose does nothing, so
// the plugins Open MPI, PMIx and UCX load (mca_*.so, ...) stay mapped until exit. LeakSanitizer checks
// at exit; a leak allocated in a plugin already unloaded has frames in no module, which no suppression
// can name (scripts/sanitizers/lsan.supp names these libraries' own start-up leaks).
extern "C" int dlclose(void* /*handle*/) { return 0; }
