"""Several hosts on one machine (network namespaces, veth links, a bridge) and the fault tests run on them."""
