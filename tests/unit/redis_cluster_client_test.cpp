// The Redis Cluster client (proxy/redis/) against a real cluster on loopback.
// PLACEHOLDER: being written.
#include <doctest/doctest.h>
