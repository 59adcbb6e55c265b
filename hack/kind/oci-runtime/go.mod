module hpchub.local/oci-runtime

go 1.22
