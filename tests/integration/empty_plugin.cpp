// A shared library that is not a strand plugin: it exports no strand_register.
extern "C" int not_a_strand_plugin() {
  return 0;
}
