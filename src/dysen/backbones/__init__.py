"""Pretrained latent video denoisers from local diffusers folders, behind one ``Backbone`` interface.

* ``base``: ``Backbone`` (text states, the model function of the one sampler, the VAE, the latent geometry),
  ``BackboneOptions`` (dtype, device, offload) and the errors;
* ``components``: ``model_index.json`` and its components, loaded by class name from a fixed table;
* ``placement``: device, or accelerate's sequential CPU offload;
* ``wan``: Wan 2.1 / 2.2 (``WanPipeline`` folders); ``unet3d``: ModelScope / ZeroScope (``TextToVideoSDPipeline``);
* ``dysen_wan``: a Wan transformer trained here with dysen's own VAE and MiniLM (``DysenWanPipeline`` folders,
  written by ``dysen train-backbone``);
* ``folder``: ``load_backbone(folder, options)``, picking the implementation by the folder's pipeline class.

Nothing here loads at import: ``from dysen.backbones.folder import load_backbone``.
"""
