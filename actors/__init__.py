"""The node's moving parts as Pykka actors."""
