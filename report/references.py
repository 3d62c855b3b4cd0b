"""The works the report cites: `cite(key)` in a template prints [n], numbered by first use, and the
References section lists exactly the works cited, in that order."""
from __future__ import annotations

# key -> the reference as the References section prints it
WORKS = {
    "efficientnet": "M. Tan and Q. V. Le. EfficientNet: Rethinking model scaling for convolutional neural "
                    "networks. ICML 2019. (EfficientNet-Lite: the TensorFlow Lite variants, same paper's family.)",
    "timm": "R. Wightman. PyTorch Image Models (timm). GitHub repository, 2019-. The tf_efficientnet_lite0 "
            "weights used here are timm's port of the TensorFlow EfficientNet-Lite checkpoints.",
    "imagenet": "O. Russakovsky et al. ImageNet Large Scale Visual Recognition Challenge. IJCV 115(3), 2015.",
    "pets": "O. M. Parkhi, A. Vedaldi, A. Zisserman and C. V. Jawahar. Cats and dogs. CVPR 2012.",
    "cifar10": "A. Krizhevsky. Learning multiple layers of features from tiny images. Technical report, "
               "University of Toronto, 2009.",
    "batchnorm": "S. Ioffe and C. Szegedy. Batch normalization: Accelerating deep network training by reducing "
                 "internal covariate shift. ICML 2015.",
    "he_init": "K. He, X. Zhang, S. Ren and J. Sun. Delving deep into rectifiers: Surpassing human-level "
               "performance on ImageNet classification. ICCV 2015.",
    "label_smoothing": "C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens and Z. Wojna. Rethinking the Inception "
                       "architecture for computer vision. CVPR 2016.",
    "pytorch": "A. Paszke et al. PyTorch: An imperative style, high-performance deep learning library. "
               "NeurIPS 2019.",
    "airbench": "K. Jordan. 94% on CIFAR-10 in 3.29 seconds on a single GPU. arXiv:2404.00498, 2024.",
    "nesterov": "I. Sutskever, J. Martens, G. Dahl and G. Hinton. On the importance of initialization and "
                "momentum in deep learning. ICML 2013.",
    "fgsm": "I. J. Goodfellow, J. Shlens and C. Szegedy. Explaining and harnessing adversarial examples. "
            "ICLR 2015.",
    "ifgsm": "A. Kurakin, I. Goodfellow and S. Bengio. Adversarial examples in the physical world. ICLR "
             "workshop 2017.",
    "mifgsm": "Y. Dong, F. Liao, T. Pang, H. Su, J. Zhu, X. Hu and J. Li. Boosting adversarial attacks with "
              "momentum. CVPR 2018.",
    "eot": "A. Athalye, L. Engstrom, A. Ilyas and K. Kwok. Synthesizing robust adversarial examples. ICML 2018 "
           "(arXiv:1707.07397).",
    "wilson": "E. B. Wilson. Probable inference, the law of succession, and statistical inference. Journal "
              "of the American Statistical Association 22(158), 1927.",
    "sklearn": "F. Pedregosa et al. Scikit-learn: Machine learning in Python. JMLR 12, 2011.",
    "agresti_coull": "A. Agresti and B. A. Coull. Approximate is better than \"exact\" for interval estimation of "
                     "binomial proportions. The American Statistician 52(2), 1998.",
}


class Citations:
    """Numbers works by first citation; `cite` is the template helper, `cited` what to list."""

    def __init__(self):
        self.order: list[str] = []

    def cite(self, *keys: str) -> str:
        for key in keys:
            if key not in WORKS:
                raise KeyError(f"cite: unknown reference {key!r}; add it to report/references.py")
            if key not in self.order:
                self.order.append(key)
        return "[" + ", ".join(str(self.order.index(k) + 1) for k in keys) + "]"

    def cited(self) -> list[tuple[int, str]]:
        return [(i + 1, WORKS[k]) for i, k in enumerate(self.order)]
