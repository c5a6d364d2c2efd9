"""Datasets, input pipelines and evaluation protocols shared by KVM-MN and ACP (imports neither model)."""
