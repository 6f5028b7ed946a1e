"""vhdkit.netvirt: Hyper-V Network Virtualization as VMM models it (logical networks with PA pools,
VM networks with VM subnets, VSIDs and CA pools), its CA->PA lookup records and forwarding
decision, and NVGRE/VXLAN frames. A sibling package: it imports nothing from vhdkit but errors.
"""

from .loader import from_dict, load, to_dict
from .model import VM, Fabric, Host, LogicalNetwork, NetworkSite, VMNetwork, VMSubnet, VNic
from .policy import LookupRecord, LookupTable, Verdict, decide, lookup_table, move_changes, wire_frame
from .pools import VSID_MAX, VSID_MIN, StaticIPPool, VsidPool
from .wire import PcapWriter, Tunnel, decapsulate, icmp_echo, read_pcap

__all__ = [
    "VM", "VSID_MAX", "VSID_MIN", "Fabric", "Host", "LogicalNetwork", "LookupRecord", "LookupTable", "NetworkSite",
    "PcapWriter", "StaticIPPool", "Tunnel", "VMNetwork", "VMSubnet", "VNic", "Verdict", "VsidPool", "decapsulate",
    "decide", "from_dict", "icmp_echo", "load", "lookup_table", "move_changes", "read_pcap", "to_dict", "wire_frame",
]
