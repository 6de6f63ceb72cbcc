"""What a model is: typed flag sets in the original's names (``flags``) and their construction
into networks and diffusion processes (``factory``)."""
